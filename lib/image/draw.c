/*
 * Detection overlay: a 2-px rectangle per box in a per-class palette colour and a
 * "label 0.87" caption on a filled strip above the box, in the built-in 5x7 font
 * (lib/image/font5x7.c). Everything is clipped to the image; boxes come from the network and
 * may be partly or wholly outside it, or (on a broken model) not finite at all.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "effdet.h"
#include "image/draw.h"

#define BORDER 2

/* Distinct, saturated colours; neighbouring class ids get far-apart hues. */
static const uint8_t PALETTE[][3] = {
    {230, 25, 75},   {60, 180, 75},   {255, 225, 25},  {0, 130, 200},   {245, 130, 48},
    {145, 30, 180},  {70, 240, 240},  {240, 50, 230},  {210, 245, 60},  {250, 190, 212},
    {0, 128, 128},   {220, 190, 255}, {170, 110, 40},  {255, 250, 200}, {128, 0, 0},
    {170, 255, 195}, {128, 128, 0},   {255, 215, 180}, {0, 0, 128},     {255, 255, 255},
};
#define PALETTE_SIZE ((int)(sizeof PALETTE / sizeof PALETTE[0]))

void draw_class_color(int class_id, uint8_t rgb[3]) {
    int i = class_id % PALETTE_SIZE;
    if (i < 0) i += PALETTE_SIZE;
    memcpy(rgb, PALETTE[i], 3);
}

/* 7-px glyphs are unreadable on a 1080p frame viewed scaled down; double them there. */
int draw_font_scale(int width, int height) {
    return (width < height ? width : height) >= 720 ? 2 : 1;
}

/* Fill [x0, x1) x [y0, y1), clipped to the image. */
static void fill_rect(effdet_image *img, int x0, int y0, int x1, int y1, const uint8_t rgb[3]) {
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > img->width) x1 = img->width;
    if (y1 > img->height) y1 = img->height;
    for (int y = y0; y < y1; y++) {
        uint8_t *p = img->rgb + ((size_t)y * img->width + x0) * 3;
        for (int x = x0; x < x1; x++, p += 3) memcpy(p, rgb, 3);
    }
}

/* A box edge as an integer pixel index, clamped to [lo, hi] before the conversion so
 * that huge or infinite coordinates cannot overflow an int. */
static int to_pixel(float v, int lo, int hi) {
    double d = floor((double)v);
    if (d < lo) return lo;
    if (d > hi) return hi;
    return (int)d;
}

/* Outline [x0, x1] x [y0, y1] (inclusive, already inside the image), BORDER px inward. */
static void draw_outline(effdet_image *img, int x0, int y0, int x1, int y1, const uint8_t rgb[3]) {
    fill_rect(img, x0, y0, x1 + 1, y0 + BORDER, rgb);
    fill_rect(img, x0, y1 + 1 - BORDER, x1 + 1, y1 + 1, rgb);
    fill_rect(img, x0, y0, x0 + BORDER, y1 + 1, rgb);
    fill_rect(img, x1 + 1 - BORDER, y0, x1 + 1, y1 + 1, rgb);
}

static void draw_glyph(effdet_image *img, int x0, int y0, int scale, char ch, const uint8_t rgb[3]) {
    if (ch < FONT_FIRST || ch >= FONT_FIRST + FONT_GLYPHS) ch = '?'; /* e.g. UTF-8 bytes of a label */
    const uint8_t *rows = effdet_font5x7[ch - FONT_FIRST];
    for (int r = 0; r < FONT_ROWS; r++)
        for (int c = 0; c < FONT_COLS; c++)
            if (rows[r] & (1u << (FONT_COLS - 1 - c)))
                fill_rect(img, x0 + c * scale, y0 + r * scale, x0 + (c + 1) * scale, y0 + (r + 1) * scale,
                          rgb);
}

/* Black text on light colours, white on dark (ITU-R BT.601 luma). */
static void text_color_for(const uint8_t bg[3], uint8_t fg[3]) {
    int luma = (299 * bg[0] + 587 * bg[1] + 114 * bg[2]) / 1000;
    memset(fg, luma > 140 ? 0 : 255, 3);
}

/* Caption strip on top of the box's top edge, moved inside the box when the box touches
 * the top of the image and shifted left when it would run off the right side. */
static void draw_caption(effdet_image *img, int box_x0, int box_y0, const char *text, const uint8_t bg[3]) {
    int scale = draw_font_scale(img->width, img->height);
    int pad = scale, advance = (FONT_COLS + 1) * scale;
    int n = (int)strlen(text);
    int cap_w = 2 * pad + n * advance - scale, cap_h = 2 * pad + FONT_ROWS * scale;
    int x = box_x0, y = box_y0 - cap_h;
    if (y < 0) y = box_y0;
    if (y + cap_h > img->height) y = img->height - cap_h;
    if (y < 0) y = 0;
    if (x + cap_w > img->width) x = img->width - cap_w;
    if (x < 0) x = 0;
    fill_rect(img, x, y, x + cap_w, y + cap_h, bg);
    uint8_t fg[3];
    text_color_for(bg, fg);
    for (int i = 0; i < n; i++) draw_glyph(img, x + pad + i * advance, y + pad, scale, text[i], fg);
}

void effdet_image_draw_detections(effdet_image *img, const effdet_model *m, const effdet_detection *dets,
                                  int count) {
    if (!img || !img->rgb || img->width <= 0 || img->height <= 0 || !dets) return;
    int w = img->width, h = img->height;
    for (int i = 0; i < count; i++) {
        const effdet_detection *d = &dets[i];
        if (!isfinite(d->x1) || !isfinite(d->y1) || !isfinite(d->x2) || !isfinite(d->y2)) continue;
        if (d->x2 < 0 || d->y2 < 0 || d->x1 >= w || d->y1 >= h || d->x2 < d->x1 || d->y2 < d->y1) continue;
        int x0 = to_pixel(d->x1, 0, w - 1), y0 = to_pixel(d->y1, 0, h - 1);
        int x1 = to_pixel(d->x2, 0, w - 1), y1 = to_pixel(d->y2, 0, h - 1);
        uint8_t color[3];
        draw_class_color(d->class_id, color);
        draw_outline(img, x0, y0, x1, y1, color);

        const char *label = m ? effdet_model_label(m, d->class_id - 1) : NULL;
        char text[96];
        if (label)
            snprintf(text, sizeof text, "%.64s %.2f", label, d->score);
        else
            snprintf(text, sizeof text, "class %d %.2f", d->class_id, d->score);
        draw_caption(img, x0, y0, text, color);
    }
}
