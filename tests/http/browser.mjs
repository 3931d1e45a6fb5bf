// browser.mjs - the page at / in a real browser: headless Debian chromium driven by
// playwright-core (tests/scripts/test_browser.sh starts saserve and runs this).
//
// usage: node tests/http/browser.mjs PORT SCREENSHOT.png
//
// Prints one "PASS ..." / "FAIL ..." line per check. What it checks:
//   * / loads (index.html, app.js, style.css, samples.js) with no console error, page error,
//     failed request or 4xx/5xx answer at any point of the run;
//   * a streamed completion shows its text incrementally (the download is throttled over
//     CDP so the stream arrives in pieces; every intermediate text is a prefix of the final),
//     with share off and then on (spans 3-4): the page's K/V bytes equal the cache object of
//     the same request sent independently (non-streamed, from Node), and K is smaller with
//     sharing while V is the same;
//   * the heatmap <img> loaded with naturalWidth = the width in the PNG's IHDR fetched
//     independently = 28 + layers * 64 + 4 (server/heatmap.h, layers <= 12);
//   * the /metrics figures are shown and the request count and generated tokens grow
//     after a completion (compared with /metrics scraped from Node);
//   * a classification of a built-in Fashion-MNIST sample with every recreation mode: the
//     label shown per mode equals a direct POST /v2/models/{name}/infer of the same image
//     (read from the dataset, not from the page) and seed; the recreated image is drawn.
// The screenshot of the final page is written to SCREENSHOT.
import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";

const port = Number(process.argv[2]);
const shot = process.argv[3];
const base = `http://127.0.0.1:${port}`;
let passed = 0, failed = 0;
const result = (ok, desc, why = "") => {
  if (ok) { passed++; console.log("PASS " + desc); } else { failed++; console.log(`FAIL ${desc} -- ${why}`); }
};

async function postJSON(path, body) {
  const r = await fetch(base + path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  return { status: r.status, json: await r.json() };
}
async function scrape() {
  const t = await (await fetch(base + "/metrics")).text();
  const sum = (name) => t.split("\n").filter((l) => l.startsWith(name + " ") || l.startsWith(name + "{"))
    .reduce((s, l) => s + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
  return { requests: sum("saserve_requests_total"), generated: sum("saserve_generated_tokens_total"), text: t };
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const problems = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") problems.push("console error: " + m.text()); });
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure() && r.failure().errorText}`));
  page.on("response", (r) => { if (r.status() >= 400) problems.push(`answer ${r.status()} for ${r.url()}`); });
  const loaded = [];
  page.on("requestfinished", (r) => loaded.push(new URL(r.url()).pathname));

  const models = await (await fetch(base + "/v1/models")).json();
  const m = models.data[0];
  await page.goto(base + "/", { waitUntil: "load" });
  await page.waitForFunction(() => document.getElementById("model-name").textContent.includes("layers"));
  result(["/", "/ui/app.js", "/ui/style.css", "/ui/samples.js"].every((p) => loaded.includes(p)),
    "GET / loaded the page and its files", loaded.join(" "));
  result((await page.textContent("#model-name")).startsWith(m.id + " · " + m.layers + " layers"),
    "the page names the model and its layers as GET /v1/models does");

  // ---- heatmap ----
  await page.waitForSelector("#heatmap[data-loaded='1']", { timeout: 10000 });
  const nat = await page.$eval("#heatmap", (i) => [i.naturalWidth, i.naturalHeight]);
  const png = Buffer.from(await (await fetch(`${base}/v1/models/${encodeURIComponent(m.id)}/similarity.png`)).arrayBuffer());
  const ihdrW = png.readUInt32BE(16), ihdrH = png.readUInt32BE(20);
  const expectSide = m.layers <= 12 ? 28 + m.layers * 64 + 4 : null;
  result(png.subarray(1, 4).toString() === "PNG" && nat[0] === ihdrW && nat[1] === ihdrH &&
    (expectSide === null || ihdrW === expectSide),
    `heatmap <img> loaded at ${nat[0]}x${nat[1]} = the PNG's IHDR ${ihdrW}x${ihdrH} (expected side ${expectSide})`);

  // ---- metrics shown ----
  await page.waitForFunction(() => document.getElementById("m-requests").dataset.value !== undefined &&
    document.getElementById("m-requests").dataset.value !== "");
  const pageFig = async () => page.evaluate(() => Object.fromEntries(["m-requests", "m-prompt-tokens", "m-generated-tokens",
    "m-kv-saved", "m-active"].map((id) => [id, Number(document.getElementById(id).dataset.value)])));
  const before = await pageFig();
  result(Object.values(before).every((v) => Number.isFinite(v)), "metrics figures shown: " + JSON.stringify(before));

  // ---- streamed completions, share off then on ----
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  const prompt = "Once upon a time", maxTokens = 48;
  await page.fill("#prompt", prompt);
  await page.fill("#max-tokens", String(maxTokens));
  await page.fill("#temperature", "0");
  await page.fill("#spans", "3-4");
  const bytes = {};
  for (const share of [false, true]) {
    const tag = share ? "share on" : "share off";
    await page.setChecked("#share", share);
    await page.setChecked("#rebalance", false);
    await page.evaluate(() => {
      window.__lens = [];
      const out = document.getElementById("output");
      window.__obs = new MutationObserver(() => window.__lens.push(out.textContent));
      window.__obs.observe(out, { childList: true, characterData: true, subtree: true });
    });
    // ~8 KB/s: the stream's events (a few hundred bytes each) arrive over about a second
    await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: 8000, uploadThroughput: -1 });
    await page.click("#run");
    await page.waitForSelector("#output[data-done='1']", { timeout: 15000 });
    await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    const seen = await page.evaluate(() => { window.__obs.disconnect(); return window.__lens; });
    const final = await page.textContent("#output");
    const partial = [...new Set(seen.filter((t) => t.length > 0 && t.length < final.length))];
    result(final.length > 0 && partial.length >= 3 && partial.every((t) => final.startsWith(t)),
      `${tag}: the text appeared incrementally (${partial.length} intermediate texts, each a prefix of the ${final.length}-char final)`,
      `final ${JSON.stringify(final)}, seen ${JSON.stringify(seen.slice(0, 5))}`);
    const shown = await page.evaluate(() => Object.fromEntries(["k-with", "v-with", "kv-with", "k-without", "v-without",
      "kv-without"].map((id) => [id, Number(document.getElementById(id).dataset.value)])));
    const body = { prompt, max_tokens: maxTokens, temperature: 0, share_spans: "3-4" };
    const direct = await postJSON(`/v1/completions?share=${share ? "on" : "off"}&rebalance=off`, body);
    const c = direct.json.cache;
    result(direct.status === 200 && direct.json.choices[0].text === final, `${tag}: the page's text = the direct request's text`,
      JSON.stringify(direct.json.choices && direct.json.choices[0].text));
    result(c && shown["k-with"] === c.k_bytes && shown["v-with"] === c.v_bytes && shown["kv-with"] === c.kv_bytes &&
      shown["kv-without"] === c.kv_bytes_without_sharing && shown["k-without"] + shown["v-without"] === c.kv_bytes_without_sharing &&
      shown["v-without"] === c.v_bytes && c.shared_attention === share,
      `${tag}: the cache bar shows the API's figures (K ${shown["k-with"]}, V ${shown["v-with"]}; without sharing K ${shown["k-without"]})`,
      JSON.stringify({ shown, api: c }));
    bytes[share] = shown;
  }
  result(bytes[true]["k-with"] < bytes[false]["k-with"] && bytes[true]["v-with"] === bytes[false]["v-with"] &&
    bytes[true]["k-without"] === bytes[false]["k-with"],
    `share on shows fewer K bytes (${bytes[true]["k-with"]} < ${bytes[false]["k-with"]}), the same V, and "without" = the share-off K`);

  // ---- metrics change after the requests ----
  const direct = await scrape();
  await page.waitForFunction((b) => Number(document.getElementById("m-requests").dataset.value) > b["m-requests"] &&
    Number(document.getElementById("m-generated-tokens").dataset.value) > b["m-generated-tokens"], before, { timeout: 10000 });
  const after = await pageFig();
  result(after["m-generated-tokens"] >= before["m-generated-tokens"] + 2 * maxTokens &&
    after["m-generated-tokens"] <= direct.generated && after["m-kv-saved"] > before["m-kv-saved"],
    `metrics figures changed: generated tokens ${before["m-generated-tokens"]} -> ${after["m-generated-tokens"]}` +
    ` (/metrics from Node: ${direct.generated}), KV bytes saved ${before["m-kv-saved"]} -> ${after["m-kv-saved"]}`);

  // ---- phiDNN classification ----
  const vm = /^saserve_vision_images_total\{model="([A-Za-z0-9._-]+)"/m.exec(direct.text);
  if (!vm) {
    result(false, "a vision model is served (saserve_vision_images_total in /metrics)");
  } else {
    const name = vm[1];
    await page.waitForSelector("#vision:not([hidden])", { timeout: 10000 });
    const meta = await (await fetch(`${base}/v2/models/${name}`)).json();
    const samples = await page.evaluate(() => window.SAMPLES.map((s) => s.index));
    const pick = 1; // the second built-in sample
    await page.selectOption("#sample", String(pick));
    await page.fill("#seed", "11");
    await page.click("#classify");
    await page.waitForSelector("#vision[data-done='1']", { timeout: 15000 });
    const rows = await page.$$eval("#vision-results tr[data-mode]", (trs) => trs.map((tr) => {
      const c = tr.querySelector("canvas");
      let ink = 0;
      if (c && c.width) { const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data; for (let i = 0; i < d.length; i += 4) ink += d[i]; }
      return { mode: tr.dataset.mode, label: tr.querySelector(".label") && tr.querySelector(".label").textContent,
        p: tr.cells[2] && tr.cells[2].textContent, w: c ? c.width : 0, ink };
    }));
    const raw = gunzipSync(readFileSync("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")).subarray(16);
    const idx = samples[pick];
    const px = Array.from(raw.subarray(idx * 784, (idx + 1) * 784));
    const modes = meta.parameters.recreation_modes;
    result(rows.map((r) => r.mode).join() === modes.join(), `a row per recreation mode: ${rows.map((r) => r.mode).join(", ")}`);
    for (const r of rows) {
      const d = await postJSON(`/v2/models/${name}/infer?recreate=${r.mode}`, {
        parameters: { seed: 11 }, inputs: [{ name: meta.inputs[0].name, datatype: "UINT8", shape: [1, 1, 28, 28], data: px }],
      });
      const out = (n) => d.json.outputs.find((o) => o.name === n).data;
      const want = d.status === 200 ? out("label")[0] : `status ${d.status}`;
      const wantP = d.status === 200 ? out("probabilities")[out("class_index")[0]].toFixed(3) : "";
      result(r.label === want && r.p === wantP && r.w === 28 && r.ink > 0,
        `recreate=${r.mode}: the page shows "${r.label}" p ${r.p} = the direct infer of test image ${idx} ("${want}" p ${wantP}), recreation drawn`,
        JSON.stringify(r));
    }
  }

  await page.screenshot({ path: shot, fullPage: true });
  result(problems.length === 0, "no console error, page error, failed request or error answer during the run",
    problems.slice(0, 5).join("; "));
} catch (e) {
  result(false, "the browser run", e.stack || String(e));
} finally {
  await browser.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
