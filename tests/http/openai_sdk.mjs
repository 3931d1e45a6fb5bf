// openai_sdk.mjs - saserve through the official OpenAI Node SDK (v4, pinned in
// package.json). Usage: node tests/http/openai_sdk.mjs PORT [API_KEY]
// The server must run with --api-key API_KEY (default "x") and --ctx 1024 (the
// tools block of the chat template alone is ~500 stories260K tokens).
// Prints one PASS/FAIL line per check and "N passed, M failed"; exit 1 on failure.
import OpenAI from 'openai';
import Ajv from 'ajv';

const port = process.argv[2];
const apiKey = process.argv[3] ?? 'x';
if (!port) {
  console.error('usage: node tests/http/openai_sdk.mjs PORT [API_KEY]');
  process.exit(2);
}
const baseURL = `http://127.0.0.1:${port}/v1`;
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30_000 });

let passed = 0;
let failed = 0;
const ok = (msg) => { passed++; console.log(`PASS sdk: ${msg}`); };
const bad = (msg) => { failed++; console.log(`FAIL sdk: ${msg}`); };
const expect = (cond, msg, detail) => (cond ? ok(msg) : bad(detail === undefined ? msg : `${msg} -- ${JSON.stringify(detail).slice(0, 400)}`));

// One check group; an exception fails it with the error text.
async function step(name, fn) {
  try {
    await fn();
  } catch (e) {
    bad(`${name}: threw ${e?.constructor?.name}: ${e?.message}`);
  }
}

// The byte identities of a cache object (every figure token-exact).
function cacheOk(c) {
  return c && typeof c === 'object'
    && c.kv_bytes === c.k_bytes + c.v_bytes
    && c.kv_bytes_saved === c.kv_bytes_without_sharing - c.kv_bytes
    && c.kv_bytes_without_sharing === 2 * c.v_bytes
    && c.k_bytes * c.layers === c.v_bytes * (c.layers - c.sharing_layers)
    && Array.isArray(c.spans) && typeof c.shared_attention === 'boolean' && c.tokens > 0;
}

const PROMPT = 'Once upon a time';
let greedyText = '';

await step('models.list', async () => {
  const models = [];
  for await (const m of client.models.list()) models.push(m);
  expect(models.length === 1 && typeof models[0].id === 'string' && models[0].object === 'model',
    'models.list() yields 1 model', models);
  const m = models[0] ?? {};
  expect(m.layers === 5 && m.context_length === 1024 && typeof m.share_spans === 'string',
    'model extras readable: layers 5, context_length 1024, share_spans', m);
});

await step('completions.create', async () => {
  const r = await client.completions.create({ model: 'llama', prompt: PROMPT, max_tokens: 24, temperature: 0 });
  const ch = r.choices?.[0] ?? {};
  greedyText = ch.text ?? '';
  expect(r.object === 'text_completion' && typeof r.id === 'string' && r.id.startsWith('cmpl-'),
    'completions.create: object text_completion, id cmpl-...', r);
  expect(greedyText.length > 0, 'completions.create: text non-empty', ch);
  expect(['length', 'stop'].includes(ch.finish_reason), `completions.create: finish_reason ${ch.finish_reason}`, ch);
  const u = r.usage ?? {};
  expect(u.prompt_tokens > 0 && u.completion_tokens > 0 && u.completion_tokens <= 24
    && u.total_tokens === u.prompt_tokens + u.completion_tokens,
  `completions.create: usage ${u.prompt_tokens} + ${u.completion_tokens} = ${u.total_tokens}`, u);
  expect(cacheOk(r.cache) && r.cache.layers === 5, 'completions.create: extra `cache` field readable and consistent', r.cache);
  expect(r.timings && typeof r.timings.generation_ms === 'number', 'completions.create: extra `timings` field readable', r.timings);
});

await step('completions.create stream', async () => {
  const stream = await client.completions.create({ model: 'llama', prompt: PROMPT, max_tokens: 24, temperature: 0, stream: true });
  let text = '';
  let chunks = 0;
  let last = null;
  for await (const chunk of stream) {
    chunks++;
    for (const c of chunk.choices) text += c.text;
    last = chunk;
  }
  expect(chunks > 1, `completions stream: ${chunks} chunks iterated`);
  expect(text === greedyText, 'completions stream: concatenated text equals the non-streamed text', { text, greedyText });
  expect(last?.choices?.[0]?.finish_reason === 'length' || last?.choices?.[0]?.finish_reason === 'stop',
    'completions stream: last chunk has finish_reason', last);
  expect(cacheOk(last?.cache) && last?.usage?.completion_tokens > 0, 'completions stream: last chunk carries usage and cache', last);
});

await step('completions.create stream include_usage', async () => {
  const stream = await client.completions.create({
    model: 'llama', prompt: PROMPT, max_tokens: 5, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  const all = [];
  for await (const chunk of stream) all.push(chunk);
  const last = all[all.length - 1];
  expect(last && last.choices.length === 0 && last.usage?.completion_tokens === 5 && cacheOk(last.cache),
    'completions stream, include_usage: a final chunk with choices [] and usage 5', last);
});

await step('completions.create ?share=on', async () => {
  const on = await client.completions.create(
    { model: 'llama', prompt: PROMPT, max_tokens: 8, temperature: 0, share_spans: '3-4' },
    { query: { share: 'on' } },
  );
  const off = await client.completions.create(
    { model: 'llama', prompt: PROMPT, max_tokens: 8, temperature: 0, share_spans: '3-4' },
    { query: { share: 'off' } },
  );
  expect(on.cache?.shared_attention === true && on.cache?.sharing_layers === 2 && off.cache?.sharing_layers === 0,
    'query option share=on|off and body extra share_spans reach the server', { on: on.cache, off: off.cache });
  expect(on.cache?.kv_bytes_saved * 5 === off.cache?.kv_bytes && on.cache?.tokens === off.cache?.tokens,
    'share on saves exactly 1/5 of the KV bytes (K of 2 of 5 layers)', { on: on.cache, off: off.cache });
});

await step('completions.create logprobs/echo/n', async () => {
  const r = await client.completions.create({ model: 'llama', prompt: PROMPT, max_tokens: 4, temperature: 0, logprobs: 2, echo: true, n: 2 });
  const lp = r.choices?.[0]?.logprobs ?? {};
  expect(r.choices.length === 2 && r.choices[1].index === 1, 'n=2 gives 2 choices', r.choices.length);
  expect(r.choices[0].text.startsWith(PROMPT), 'echo=true prefixes the prompt', r.choices[0].text);
  const P = r.choices?.[0]?.usage?.prompt_tokens ?? r.usage?.prompt_tokens;
  // echo + logprobs: the prompt's tokens first (the first one's logprob null), then the 4 generated
  expect(P === 5 && lp.tokens?.length === P + 4 && lp.token_logprobs?.length === P + 4 && lp.text_offset?.length === P + 4 &&
    lp.token_logprobs[0] === null && lp.top_logprobs[0] === null &&
    lp.token_logprobs.slice(1).every((x) => typeof x === 'number' && x <= 0) &&
    lp.top_logprobs.slice(1).every((t) => Object.keys(t).length === 2) && lp.text_offset[P] === PROMPT.length,
    'echo + logprobs=2: prompt tokens (first null) then generated, 2 alternatives each, text_offset from the echo', lp);
});

await step('completions.create echo + logprobs, stream and max_tokens 0', async () => {
  const whole = await client.completions.create({ model: 'llama', prompt: PROMPT, max_tokens: 4, temperature: 0, logprobs: 1, echo: true });
  const stream = await client.completions.create({ model: 'llama', prompt: PROMPT, max_tokens: 4, temperature: 0, logprobs: 1, echo: true, stream: true });
  const chunks = [];
  for await (const c of stream) if (c.choices?.length) chunks.push(c.choices[0]);
  const wl = whole.choices[0].logprobs;
  expect(chunks[0]?.text === PROMPT && chunks[0].logprobs?.tokens?.length === whole.usage.prompt_tokens &&
    chunks.map((c) => c.text).join('') === whole.choices[0].text &&
    JSON.stringify(chunks.flatMap((c) => c.logprobs?.token_logprobs ?? [])) === JSON.stringify(wl.token_logprobs),
    'stream: the first chunk is the prompt with its logprobs; the chunks add up to the whole answer', chunks[0]);
  const score = await client.completions.create({ model: 'llama', prompt: PROMPT, max_tokens: 0, logprobs: 1, echo: true });
  const sl = score.choices[0].logprobs;
  expect(score.choices[0].text === PROMPT && score.usage.completion_tokens === 0 &&
    JSON.stringify(sl.token_logprobs) === JSON.stringify(wl.token_logprobs.slice(0, whole.usage.prompt_tokens)),
    'max_tokens 0 + echo: the prompt alone with the same logprobs', score.choices[0]);
});

let chatText = '';
const messages = [
  { role: 'system', content: 'You tell short stories.' },
  { role: 'user', content: 'Tell me about a cat.' },
];

await step('chat.completions.create', async () => {
  const r = await client.chat.completions.create({ model: 'llama', messages, max_tokens: 20, temperature: 0 });
  const ch = r.choices?.[0] ?? {};
  chatText = ch.message?.content ?? '';
  expect(r.object === 'chat.completion' && ch.message?.role === 'assistant' && chatText.length > 0,
    'chat.completions.create: assistant message with content', r);
  expect(['length', 'stop'].includes(ch.finish_reason), `chat.completions.create: finish_reason ${ch.finish_reason}`, ch);
  expect(r.usage?.completion_tokens > 0 && r.usage.total_tokens === r.usage.prompt_tokens + r.usage.completion_tokens,
    'chat.completions.create: usage numbers', r.usage);
  expect(cacheOk(r.cache), 'chat.completions.create: extra `cache` field readable and consistent', r.cache);
});

await step('chat.completions.create stream', async () => {
  const stream = await client.chat.completions.create({ model: 'llama', messages, max_tokens: 20, temperature: 0, stream: true });
  let text = '';
  let role = null;
  let finish = null;
  let last = null;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      if (c.delta?.role && role === null) role = c.delta.role;
      text += c.delta?.content ?? '';
      if (c.finish_reason) finish = c.finish_reason;
    }
    last = chunk;
  }
  expect(role === 'assistant', 'chat stream: first delta has role assistant', role);
  expect(text === chatText, 'chat stream: concatenated deltas equal the non-streamed content', { text, chatText });
  expect(finish === 'length' || finish === 'stop', `chat stream: finish_reason ${finish}`);
  expect(cacheOk(last?.cache), 'chat stream: last chunk carries cache', last);
});

await step('chat stream helper', async () => {
  // the SDK's higher-level stream helper accumulates the message itself
  const runner = client.beta.chat.completions.stream({ model: 'llama', messages, max_tokens: 20, temperature: 0 });
  const final = await runner.finalChatCompletion();
  expect(final.choices?.[0]?.message?.content === chatText, 'beta.chat.completions.stream().finalChatCompletion() gives the same content',
    final.choices?.[0]);
});

await step('embeddings', async () => {
  // the SDK asks for base64 by default and decodes it; compare with the float form fetched directly
  const r = await client.embeddings.create({ model: 'llama', input: ['Once upon a time', 'a little girl'] });
  expect(r.object === 'list' && r.data.length === 2 && r.data[1].index === 1, 'embeddings.create: a list of 2, indexed', r);
  const v = r.data[0].embedding;
  const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  expect(Array.isArray(v) && v.length === 64 && Math.abs(norm - 1) < 1e-5, 'embeddings: 64 floats (dim), L2 norm 1', { len: v.length, norm });
  expect(r.usage && r.usage.prompt_tokens > 0 && r.usage.total_tokens === r.usage.prompt_tokens, 'embeddings: usage prompt_tokens = total_tokens', r.usage);
  const res = await fetch(`${baseURL}/embeddings`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${apiKey}` },
    body: JSON.stringify({ input: 'Once upon a time', encoding_format: 'float' }) });
  const f = (await res.json()).data[0].embedding;
  const maxd = Math.max(...f.map((x, i) => Math.abs(x - v[i])));
  expect(maxd < 1e-6, 'embeddings: the SDK-decoded base64 vector equals the float one (same input, batched or alone)', { maxd });
  const other = r.data[1].embedding;
  const cos = v.reduce((s, x, i) => s + x * other[i], 0);
  expect(cos < 0.9999, 'embeddings: two different inputs give different vectors', { cos });
});

await step('structured output', async () => {
  // OpenAI's json_schema response_format through the SDK; the content must parse and fit the schema
  const schema = { type: 'object', properties: { mood: { enum: ['happy', 'sad'] }, age: { type: 'integer' } },
    required: ['mood', 'age'], additionalProperties: false };
  const r = await client.chat.completions.create({ model: 'llama', messages, max_tokens: 60, temperature: 0,
    response_format: { type: 'json_schema', json_schema: { name: 'person', strict: true, schema } } });
  const c = r.choices[0];
  let o = null;
  try { o = JSON.parse(c.message.content); } catch { /* checked below */ }
  expect(c.finish_reason === 'stop' && o && Object.keys(o).sort().join() === 'age,mood'
    && ['happy', 'sad'].includes(o.mood) && Number.isInteger(o.age),
  'chat response_format json_schema: finish stop, content parses and fits the schema', c);
  try {
    await client.chat.completions.create({ model: 'llama', messages, max_tokens: 4,
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', format: 'email' } } } });
    bad('unsupported schema keyword: no error thrown');
  } catch (e) {
    expect(e instanceof OpenAI.BadRequestError && e.param === 'response_format' && e.code === 'unsupported_schema'
      && /format/.test(e.message), 'schema keyword format -> BadRequestError param response_format, code unsupported_schema',
    { status: e.status, error: e.error });
  }
});

// Function calling: a named tool_choice constrains the output to that call, so even stories260K
// answers with a call whose arguments fit the schema (validated with ajv, a real validator).
await step('tools', async () => {
  const parameters = { type: 'object', properties: { city: { type: 'string', maxLength: 12 }, days: { type: 'integer' } },
    required: ['city', 'days'], additionalProperties: false };
  const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Weather of a city', parameters } },
    { type: 'function', function: { name: 'get_time' } }];
  const validate = new Ajv({ strict: false }).compile(parameters);
  const body = { model: 'llama', messages: [{ role: 'user', content: 'Weather in Paris?' }], tools,
    tool_choice: { type: 'function', function: { name: 'get_weather' } }, max_tokens: 300, seed: 11 };
  const callOk = (call) => {
    let args = null;
    try { args = JSON.parse(call?.function?.arguments); } catch { /* checked below */ }
    return call && /^call_/.test(call.id) && call.type === 'function' && call.function.name === 'get_weather'
      && args !== null && validate(args);
  };
  const r = await client.chat.completions.create(body);
  const c = r.choices[0];
  expect(c.finish_reason === 'tool_calls' && c.message.content === null && c.message.tool_calls?.length === 1
    && callOk(c.message.tool_calls[0]),
  'chat tool_choice {function: get_weather}: one tool call, arguments JSON.parse and validate (ajv)', c);
  const stream = client.beta.chat.completions.stream({ ...body, stream: true });
  const fin = await stream.finalChatCompletion();
  const fc = fin.choices[0];
  expect(fc.finish_reason === 'tool_calls' && fc.message.tool_calls?.length === 1 && callOk(fc.message.tool_calls[0])
    && fc.message.tool_calls[0].function.arguments === c.message.tool_calls[0].function.arguments,
  'beta.chat.completions.stream accumulates the same call from delta.tool_calls', fc);
  // the answer fed back: assistant tool_calls + a tool message are accepted and rendered
  const back = await client.chat.completions.create({ model: 'llama', tools, max_tokens: 2, messages: [
    ...body.messages, c.message, { role: 'tool', tool_call_id: c.message.tool_calls[0].id, content: '{"temp": 21}' }] });
  expect(back.usage.prompt_tokens > r.usage.prompt_tokens + 20, 'the call and its result sent back render into a longer prompt',
    { before: r.usage, after: back.usage });
  try {
    await client.chat.completions.create({ ...body, tool_choice: { type: 'function', function: { name: 'nope' } } });
    bad('unknown tool in tool_choice: no error thrown');
  } catch (e) {
    expect(e instanceof OpenAI.BadRequestError && e.param === 'tool_choice', 'tool_choice naming no tool -> BadRequestError param tool_choice',
      { status: e.status, error: e.error });
  }
});

await step('errors', async () => {
  try {
    await client.completions.create({ model: 'llama', prompt: PROMPT, temperature: 3 });
    bad('temperature 3: no error thrown');
  } catch (e) {
    expect(e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === 'temperature' && e.code === 'invalid_value'
      && e.type === 'invalid_request_error',
    'temperature 3 -> OpenAI.BadRequestError 400, param temperature, code invalid_value', { status: e.status, error: e.error });
  }
  try {
    await client.completions.create({ model: 'llama', prompt: 'x '.repeat(2000) });
    bad('over-long prompt: no error thrown');
  } catch (e) {
    expect(e instanceof OpenAI.BadRequestError && e.code === 'context_length_exceeded',
      'prompt longer than the context -> BadRequestError code context_length_exceeded', { status: e.status, error: e.error });
  }
  try {
    await client.completions.create({ model: 'llama', prompt: PROMPT }, { query: { share: 'maybe' } });
    bad('?share=maybe: no error thrown');
  } catch (e) {
    expect(e instanceof OpenAI.BadRequestError && e.param === 'share', '?share=maybe -> BadRequestError param share',
      { status: e.status, error: e.error });
  }
  const wrong = new OpenAI({ baseURL, apiKey: `${apiKey}-wrong`, maxRetries: 0, timeout: 10_000 });
  try {
    await wrong.models.list();
    bad('wrong API key: no error thrown');
  } catch (e) {
    expect(e instanceof OpenAI.AuthenticationError && e.status === 401, 'wrong API key -> OpenAI.AuthenticationError 401',
      { status: e.status, error: e.error });
  }
});

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
