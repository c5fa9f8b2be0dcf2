/* Internal: detection overlay drawing (lib/image/draw.c) and its built-in bitmap font. */
#ifndef EFFDET_DRAW_H
#define EFFDET_DRAW_H

#include <stdint.h>

#define FONT_FIRST 32 /* glyphs cover printable ASCII 32..126 */
#define FONT_GLYPHS 95
#define FONT_COLS 5
#define FONT_ROWS 7

extern const uint8_t effdet_font5x7[FONT_GLYPHS][FONT_ROWS];

/* The fixed palette colour that effdet_image_draw_detections() uses for a class id. */
void draw_class_color(int class_id, uint8_t rgb[3]);

/* Pixel size of one font pixel on an image of this size (1, or 2 on large images). */
int draw_font_scale(int width, int height);

#endif
