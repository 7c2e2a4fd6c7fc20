// What the browser tests share: opening the page, driving its controls, reading its state.
import { readFileSync } from 'node:fs';
import { test as base, expect } from '@playwright/test';

/** Fails the test on any uncaught page or worker error (a Rust panic prints "panicked at"). */
let errors = [];
let allowed = null;
/** A test that causes such errors on purpose names them. */
export const allowErrors = (pattern) => { allowed = pattern; };

/**
 * The kernel choices the page remembered in earlier tests of this worker and spec file
 * (localStorage key → the stored string): a fresh context would time every variant again, ~25 s a
 * page on SwiftShader. Tests start as a returning visitor whose choices are remembered; tuning
 * itself is tested with `{ tuned: false }`. The page adds each new choice to those it read, so the
 * last string stored holds them all.
 */
const tunings = {};

async function rememberTunings(page) {
  const stored = await page.evaluate(() => Object.entries(localStorage)
    .filter(([key]) => key.startsWith('kiln.kernels:'))).catch(() => []);
  Object.assign(tunings, Object.fromEntries(stored));
}

/**
 * Playwright's `test` with a `page` that watches for errors and keeps the kernel choices. A
 * fixture, not hooks: hooks declared in this shared module attached to only some spec files.
 */
export const test = base.extend({
  page: async ({ page }, use) => {
    errors = [];
    allowed = null;
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error' && /panicked|RuntimeError|unreachable/.test(m.text())) errors.push(m.text());
    });
    await use(page);
    await rememberTunings(page);
    expect(errors.filter((e) => !allowed?.test(e)), 'errors in the page or its worker').toEqual([]);
  },
});
export { expect };

export async function open(page, query = '?backend=wgpu', { tuned = true } = {}) {
  if (tuned) {
    await page.addInitScript((known) => {
      for (const [key, value] of Object.entries(known)) {
        if (localStorage.getItem(key) === null) localStorage.setItem(key, value);
      }
    }, tunings);
  }
  await page.goto(`/${query}`);
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
}

export const setField = (page, key, value) => page.fill(`[data-key="${key}"]`, String(value));
export const kiln = (page, expr) => page.evaluate(`window.kiln.${expr}`);

/**
 * Trains `steps` steps with an evaluation (of two validation batches and a sample of 12 tokens,
 * to keep emulated GPUs quick) every `every`, and waits for the run to finish.
 */
export async function train(page, steps, every = 0) {
  await setField(page, 'train.max_steps', steps);
  await setField(page, 'train.eval_interval', every);
  await setField(page, 'train.eval_steps', 2);
  await page.fill('#sample-tokens', '12');
  await page.click('#train');
  await expect(page.locator('#eta')).toHaveText('done', { timeout: 5 * 60_000 });
  // The run ends after its last evaluation and sample, which take a while on an emulated GPU.
  await expect(page.locator('#train')).toBeEnabled({ timeout: 3 * 60_000 });
}

/** A file for `setInputFiles`. */
export const file = (name, content) => ({ name, mimeType: 'application/octet-stream', buffer: Buffer.from(content) });

/** A safetensors file's header: an 8-byte length, then JSON naming each tensor's dtype and shape. */
export const safetensorsHeader = (bytes) => JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString());

/** Clicks `button` and returns the `count` files it downloads, as `setInputFiles` takes them. */
export async function downloads(page, button, count) {
  const files = [];
  page.on('download', (d) => files.push(d));
  await page.click(button);
  await expect.poll(() => files.length).toBe(count);
  return Promise.all(files.map(async (d) => ({
    name: d.suggestedFilename(), mimeType: 'application/octet-stream', buffer: readFileSync(await d.path()),
  })));
}

export async function generate(page, seed, maxTokens = 40) {
  await page.fill('#seed', String(seed));
  await page.fill('#max-tokens', String(maxTokens));
  await page.click('#generate');
  await page.waitForFunction(() => window.kiln.generated != null, null, { timeout: 120_000 });
  return kiln(page, 'generated');
}

/** A few kilobytes of text with a small vocabulary, different from Shakespeare. */
export function customText() {
  const words = ['kiln', 'fire', 'clay', 'glaze', 'pot', 'heat', 'ash', 'wheel', 'cone', 'slip'];
  let x = 7;
  const out = [];
  for (let i = 0; i < 1200; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    out.push(words[x % words.length] + (i % 12 === 11 ? '.\n' : ' '));
  }
  return out.join('');
}

