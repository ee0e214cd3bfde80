// Loads the bundled incident app in headless system Chromium, calls window.run(), waits until the
// Sentry SDK has flushed, and prints one JSON line per Sentry request and a final summary line.
//
// usage: node drive.js PAGE_URL [EXPECTED_EVENTS]
// Exits non-zero when the page fails, the SDK's requests fail, or fewer event envelopes than
// EXPECTED_EVENTS (default 3) got a 2xx answer within the deadline.
const { chromium } = require("playwright-core");

const CHROMIUM = process.env.DETECTOR_CHROMIUM || "/usr/bin/chromium";
// The machine has no network: these flags stop Chromium from calling home and stalling.
const ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
const DEADLINE_MS = 20000;

function itemTypes(body) {
  // An envelope: a header line, then (item header, payload) pairs. Browser payloads carry no
  // `length`, so every item is one header line followed by one payload line.
  const lines = (body || "").split("\n").filter((l) => l.length > 0);
  const header = lines.length ? JSON.parse(lines[0]) : {};
  const types = [];
  for (let i = 1; i < lines.length; i += 2) types.push(JSON.parse(lines[i]).type);
  return { eventId: header.event_id || null, types };
}

(async () => {
  const pageUrl = process.argv[2];
  const expectedEvents = Number(process.argv[3] || 3);
  if (!pageUrl) throw new Error("usage: node drive.js PAGE_URL [EXPECTED_EVENTS]");
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  const sent = [];
  const pending = new Set();
  try {
    const page = await browser.newPage();
    page.on("console", (m) => console.error("console:", m.text()));
    page.on("pageerror", (e) => console.error("pageerror:", e.message));
    page.on("request", (req) => {
      if (!req.url().includes("/envelope/")) return;
      pending.add(req);
    });
    page.on("requestfinished", (req) => {
      if (!pending.has(req)) return;
      // Still pending until its answer is recorded, so the loop below never counts ahead of `sent`.
      req.response().then((res) => {
        const record = { url: req.url(), status: res ? res.status() : null, ...itemTypes(req.postData()) };
        sent.push(record);
        console.log(JSON.stringify({ request: record }));
        pending.delete(req);
      });
    });
    page.on("requestfailed", (req) => {
      if (!pending.delete(req)) return;
      const record = { url: req.url(), status: null, failure: req.failure()?.errorText, ...itemTypes(req.postData()) };
      sent.push(record);
      console.log(JSON.stringify({ request: record }));
    });
    await page.goto(pageUrl);
    const result = await page.evaluate(() => window.run());
    // The two unhandled errors are thrown from timers 10 and 20 ms after run() returned.
    const delivered = () => sent.filter((r) => r.types.includes("event") && r.status >= 200 && r.status < 300).length;
    const end = Date.now() + DEADLINE_MS;
    while (Date.now() < end && (delivered() < expectedEvents || pending.size > 0)) {
      await page.evaluate((ms) => window.flushSentry(ms), 2000);
      await page.waitForTimeout(100);
    }
    // One last flush, so a session update queued with the last event is sent too.
    await page.evaluate((ms) => window.flushSentry(ms), 2000);
    while (Date.now() < end && pending.size > 0) await page.waitForTimeout(50);
    const summary = { result, events: delivered(), requests: sent.length, pending: pending.size };
    console.log(JSON.stringify({ summary }));
    const failed = sent.filter((r) => !(r.status >= 200 && r.status < 300));
    if (result !== "ok" || summary.events < expectedEvents || failed.length > 0 || pending.size > 0) {
      process.exitCode = 1;
    }
  } finally {
    await browser.close();
  }
})().catch((err) => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(2);
});
