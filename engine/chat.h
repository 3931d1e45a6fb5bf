/*
 * chat.h - render a list of chat messages into a prompt in the model's chat
 * format. Plain strings in, one malloc'd string out: no JSON, no HTTP, no
 * tokenizer. Roles are "system", "user" and "assistant".
 *
 * The formats (BOS is never written: the tokenizer adds it):
 *
 *   llama2  The Llama-2 chat template. Each user turn is
 *             [INST] {user} [/INST]
 *           and every user turn after the first output is preceded by <s>.
 *           Each assistant turn is " {assistant} </s>". System messages are
 *           folded into the next user turn:
 *             [INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST]
 *           (several system messages in a row are joined with "\n"; a system
 *           message with no user turn after it is rendered as a user turn with
 *           empty text). As in the reference template (content.strip()), the
 *           text inside [INST] ... [/INST] and the assistant text are stripped
 *           of leading and trailing whitespace. The model continues right
 *           after " [/INST]", so add_generation_prompt adds nothing.
 *             system S, user U1, assistant A1, user U2 ->
 *             "[INST] <<SYS>>\nS\n<</SYS>>\n\nU1 [/INST] A1 </s><s>[INST] U2 [/INST]"
 *   chatml  "<|im_start|>{role}\n{content}<|im_end|>\n" per message, content
 *           verbatim; generation prompt "<|im_start|>assistant\n".
 *   llama3  "<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>"
 *           per message, content stripped of leading and trailing whitespace
 *           (the reference template's "| trim"); BOS <|begin_of_text|> is the
 *           tokenizer's; generation prompt
 *           "<|start_header_id|>assistant<|end_header_id|>\n\n".
 *
 * The markers (<s>, [INST], <|im_start|>, ...) are plain text here. Turning
 * them into special tokens is the tokenizer's job (parse_special); message
 * text that itself contains such markers is not escaped by this module.
 *
 * All functions are pure and may be called from any thread.
 *
 * Public: the server renders /v1/chat/completions prompts with it (server/submit.c)
 * and tokenizes the result with engine_tokenize (engine.h); it holds no engine state.
 */
#ifndef SA_CHAT_H
#define SA_CHAT_H

#include <stdbool.h>
#include <stddef.h>

enum chat_format { CHAT_FORMAT_LLAMA2 = 1, CHAT_FORMAT_CHATML, CHAT_FORMAT_LLAMA3 };

/* One message; both strings are borrowed (NUL-terminated, never freed here). */
struct chat_message {
    const char *role;    /* "system", "user" or "assistant" */
    const char *content;
};

/*
 * Choose the format. A non-empty name ("llama2", "chatml", "llama3") wins;
 * an unknown name gives SA_ERR_INVALID_ARG. With no name (NULL or ""), the
 * GGUF tokenizer.chat_template text decides: it contains "<|im_start|>" ->
 * chatml, else "<|start_header_id|>" -> llama3, else "[INST]" -> llama2; with
 * no template or none of these, llama2. Returns 0 and sets *out.
 */
int chat_format_pick(const char *name, const char *gguf_template, enum chat_format *out);

/* "llama2", "chatml", "llama3"; "unknown" for any other value. Static string. */
const char *chat_format_name(enum chat_format f);

/*
 * Render msgs[0..n) in format f; with add_generation_prompt the assistant
 * header that starts the model's reply is appended (chatml, llama3).
 * On success returns 0 and *out is a malloc'd NUL-terminated prompt that the
 * caller frees. Errors (with *out set to NULL): SA_ERR_INVALID_ARG for n == 0,
 * an unknown format or role, or a NULL role/content; SA_ERR_NOMEM.
 */
int chat_render(enum chat_format f, const struct chat_message *msgs, size_t n, bool add_generation_prompt,
                char **out);

#endif
