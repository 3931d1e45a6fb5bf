// make_tok_ref.mjs - reference token ids for tests/unit/test_hf.c, computed by
// Hugging Face's own JavaScript port of `tokenizers` (an implementation
// independent of engine/tokenizer*.c).
//
//   npm install --prefix /tmp/tokref @huggingface/tokenizers@0.2.0
//   NODE_PATH=/tmp/tokref/node_modules node tests/hf/make_tok_ref.mjs \
//       ../shared/models/tinystories-656K/hf ../shared/eval/tinystories/tinystories_valid_head.txt tests/hf/tinystories-656k
//
// Writes PREFIX.inp (test strings separated by "\n__ggml_vocab_test__\n", as
// llama.cpp's tokenizer vectors), PREFIX.out (one line of ids per string,
// without the BOS the post-processor adds) and PREFIX.eval.out ("<n_tokens>
// <fnv1a-64 of the ids as little-endian int32, hex>" for the whole evaluation
// text, and on the next line its first 64 ids).
import { createRequire } from "module";
import fs from "fs";
const require = createRequire(process.env.NODE_PATH ? process.env.NODE_PATH + "/" : import.meta.url);
const { Tokenizer } = require("@huggingface/tokenizers");
const [dir, evalPath, prefix] = process.argv.slice(2);
const tok = new Tokenizer(JSON.parse(fs.readFileSync(dir + "/tokenizer.json", "utf8")),
                          JSON.parse(fs.readFileSync(dir + "/tokenizer_config.json", "utf8")));
const enc = (s) => tok.encode(s, { add_special_tokens: false }).ids;
const text = fs.readFileSync(evalPath, "utf8");
const lines = text.split("\n").filter((l) => l.length > 0).slice(0, 60);
const crafted = ["Once", "Once upon a time", "a", " ", "  two  spaces ", "héllo €", "Tom's dog said: \"Hi!\"",
                 "1234567890", "tab\there", "new\nline", "\n\nHello", "ÆØÅ æøå", "日本語", "🙂 smile",
                 "The end.", "She said, \"Wow, Kitty, your car is so bright and clean!\""];
const inputs = crafted.concat(lines);
fs.writeFileSync(prefix + ".inp", inputs.join("\n__ggml_vocab_test__\n") + "\n");
fs.writeFileSync(prefix + ".out", inputs.map((s) => enc(s).join(" ")).join("\n") + "\n");
const ids = enc(text);
let h = 0xcbf29ce484222325n;
for (const id of ids) {
  for (let k = 0; k < 4; k++) {
    h ^= BigInt((id >>> (8 * k)) & 0xff);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
}
fs.writeFileSync(prefix + ".eval.out", `${ids.length} ${h.toString(16).padStart(16, "0")}\n${ids.slice(0, 64).join(" ")}\n`);
console.log(`${inputs.length} strings; eval text: ${ids.length} tokens`);
