/* Embeds web/index.html into the binary so that the daemon serves its page with no
 * files to install and nothing to find at run time (issue 5: self-contained, offline).
 *
 * The assembler's .incbin copies the file's bytes verbatim at build time; the path is
 * relative to the directory make runs in (the repository root). mk/web.mk makes
 * daemon/web.o depend on web/index.html, since the compiler's -MMD dependency list
 * cannot see a file that only the assembler reads. */
#include "web.h"

#include <stdint.h>

__asm__(".pushsection .rodata\n"
        ".balign 16\n"
        "effdetd_web_index_html:\n"
        ".incbin \"web/index.html\"\n"
        "effdetd_web_index_html_end:\n"
        /* A trailing NUL so the page can also be used as a C string. */
        ".byte 0\n"
        ".balign 8\n"
        /* The size, computed by the assembler: subtracting two C pointers into what C sees
         * as different objects would be undefined behaviour. */
        "effdetd_web_index_html_size:\n"
        ".quad effdetd_web_index_html_end - effdetd_web_index_html\n"
        ".popsection\n");

extern const unsigned char effdetd_web_index_html[];
extern const uint64_t effdetd_web_index_html_size;

const unsigned char *web_index_html(size_t *len) {
    if (len) *len = (size_t)effdetd_web_index_html_size;
    return effdetd_web_index_html;
}
