/*
 * ui.h - the static files of the web page at / (server/ui/), compiled into
 * the binary: server/ui.c pulls each file in with the assembler's .incbin at
 * build time (the Makefile makes ui.o depend on every file in server/ui), so the served
 * bytes are the committed files and saserve needs nothing beside it.
 */
#ifndef SA_UI_H
#define SA_UI_H

#include <stddef.h>

struct ui_file {
    const char *name;         /* "index.html", "app.js", ... (no directories) */
    const char *content_type; /* with charset for text */
    const unsigned char *data;
    size_t len;
    const char *etag;         /* "\"<16 hex digits>\"": FNV-1a 64 of the bytes, quotes included */
};

/* The file of that name, or NULL. Computes the ETags on the first call; call
 * from one thread (the HTTP loop) only. */
const struct ui_file *ui_file_find(const char *name);

#endif
