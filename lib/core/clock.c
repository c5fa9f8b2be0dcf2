/* The public face of the internal clock (clock.h): effdet_now_ms(). */
#include "core/clock.h"
#include "effdet.h"

double effdet_now_ms(void) {
    return now_ms();
}
