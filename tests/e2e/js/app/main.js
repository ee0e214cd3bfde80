// The incident app of fixtures/real-clients/browser-app-src/main.js; only the Sentry options differ:
// the test bundles it with esbuild --define so the DSN names the live server under test.
import * as Sentry from "@sentry/browser";
import { renderPaidFeatures } from "./features/PaidFeatures";
Sentry.init({ dsn: __DETECTOR_DSN__, release: __DETECTOR_RELEASE__, environment: __DETECTOR_ENVIRONMENT__, autoSessionTracking: true });
window.run = async () => {
  try { document.body.innerHTML = await renderPaidFeatures("u-17"); }
  catch (e) { Sentry.captureException(e); }
  // an unhandled one too
  setTimeout(() => { null.foo; }, 10);
  setTimeout(() => { Promise.reject(new Error("Failed to fetch /api/billing/plan 503")); }, 20);
  return "ok";
};
// Lets the driver wait until the SDK has sent everything it holds instead of sleeping a guessed time.
window.flushSentry = (timeoutMs) => Sentry.flush(timeoutMs);
