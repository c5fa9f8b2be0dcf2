/* libFuzzer target: what the daemon does with a client's image bytes before inference:
 * probe the JPEG header, decode (with and without DCT scaling, under a pixel limit) and
 * letterbox into a network input. Checks the decoded size agrees with the probe, and
 * that the engine's decode on a 2-thread pool (the split decoder, jpeg_split.c, and
 * the banded decoder of the restart-marked files it does not take, jpeg_bands.c) gives
 * the sequential decode's status and pixels: the same status whichever of the two
 * fails, the same pixels when both succeed. The split decoder is also run directly,
 * without the pool's size threshold: it must refuse what the sequential decoder
 * refuses and give its pixels for what it accepts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"
#include "effdet.h"
#include "image/jpeg_decode.h"
#include "image/letterbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int w = 0, h = 0;
    effdet_error e = {{0}};
    if (effdet_image_probe_jpeg(data, size, &w, &h, &e) != EFFDET_OK) return 0;
    if (w <= 0 || h <= 0) abort();
    static uint8_t canvas[96 * 64 * 3];
    for (int dct = 0; dct < 2; dct++) {
        effdet_decode_opts o = {4000000, dct, 96, 64};
        effdet_image img = {0};
        effdet_status seq = effdet_image_decode_jpeg(data, size, &o, &img, &e);
        static threadpool *tp;
        static jpeg_split_scratch *scratch; /* kept across inputs, as a context keeps it */
        if (!tp && !(tp = threadpool_create(2))) abort();
        if (!scratch && !(scratch = jpeg_split_scratch_create())) abort();
        effdet_image par = {0};
        effdet_status pool = image_decode_jpeg_pool(data, size, &o, tp, NULL, &par, &e);
        /* Both ways: the pool's decoder must neither refuse a file the sequential one
         * decodes nor return pixels (maybe invented ones) for a file it refuses. */
        if (pool != seq) abort();
        /* The split decoder on its own, for files of any size (the pool only sends it
         * large ones): it must refuse what the sequential decoder refuses, and where it
         * accepts a file give the sequential pixels. */
        effdet_image split = {0};
        effdet_status sp = jpeg_decode_split(data, size, 4000000, &o, tp, scratch, 0, &split);
        if (seq != EFFDET_OK) {
            if (sp == EFFDET_OK) abort();
            continue;
        }
        if (img.width <= 0 || img.height <= 0 || (long long)img.width * img.height > 4000000) abort();
        if (!dct && (img.width != w || img.height != h)) abort(); /* unscaled: the probe's size */
        if (par.width != img.width || par.height != img.height ||
            memcmp(par.rgb, img.rgb, (size_t)img.width * img.height * 3) != 0)
            abort();
        effdet_image_free(&par);
        if (sp == EFFDET_OK) {
            if (split.width != img.width || split.height != img.height ||
                memcmp(split.rgb, img.rgb, (size_t)img.width * img.height * 3) != 0)
                abort();
            effdet_image_free(&split);
        }
        letterbox_info li;
        if (letterbox_rgb(&img, 96, 64, canvas, &li, &e) != EFFDET_OK) abort(); /* any valid image fits */
        if (li.resized_w < 1 || li.resized_w > 96 || li.resized_h < 1 || li.resized_h > 64) abort();
        effdet_image_free(&img);
    }
    return 0;
}
