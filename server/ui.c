/*
 * ui.c - the web page's files (ui.h). Each file is included by the assembler
 * (.incbin, path relative to the directory make runs in: the repository root)
 * between two global labels, followed by a NUL that is not part of it.
 */
#include "ui.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define UI_INCBIN(sym, path)                                                                                \
    __asm__(".section .rodata\n.balign 16\n.globl saserve_ui_" #sym "\nsaserve_ui_" #sym ":\n.incbin \"" path \
            "\"\n.globl saserve_ui_" #sym "_end\nsaserve_ui_" #sym "_end:\n.byte 0\n.previous\n");             \
    extern const unsigned char saserve_ui_##sym[], saserve_ui_##sym##_end[]

UI_INCBIN(index_html, "server/ui/index.html");
UI_INCBIN(app_js, "server/ui/app.js");
UI_INCBIN(style_css, "server/ui/style.css");
UI_INCBIN(samples_js, "server/ui/samples.js");

#define UI_ENTRY(name, sym, type) {name, type, saserve_ui_##sym, 0, NULL}, /* len set at first use */

static struct ui_file ui_files[] = {
    UI_ENTRY("index.html", index_html, "text/html; charset=utf-8")
    UI_ENTRY("app.js", app_js, "text/javascript; charset=utf-8")
    UI_ENTRY("style.css", style_css, "text/css; charset=utf-8")
    UI_ENTRY("samples.js", samples_js, "text/javascript; charset=utf-8")
};
static const unsigned char *const ui_ends[] = {saserve_ui_index_html_end, saserve_ui_app_js_end,
                                               saserve_ui_style_css_end, saserve_ui_samples_js_end};
#define UI_N (sizeof ui_files / sizeof ui_files[0])
static char ui_etags[UI_N][20];
static int ui_ready;

static void ui_init(void)
{
    for (size_t i = 0; i < UI_N; i++) {
        ui_files[i].len = (size_t)(ui_ends[i] - ui_files[i].data);
        uint64_t h = 0xcbf29ce484222325ull;
        for (size_t k = 0; k < ui_files[i].len; k++) h = (h ^ ui_files[i].data[k]) * 0x100000001b3ull;
        snprintf(ui_etags[i], sizeof ui_etags[i], "\"%016llx\"", (unsigned long long)h);
        ui_files[i].etag = ui_etags[i];
    }
    ui_ready = 1;
}

const struct ui_file *ui_file_find(const char *name)
{
    if (!ui_ready) ui_init();
    for (size_t i = 0; i < UI_N; i++)
        if (strcmp(name, ui_files[i].name) == 0) return &ui_files[i];
    return NULL;
}
