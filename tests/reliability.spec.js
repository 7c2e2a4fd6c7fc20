// What must never happen to a user's work: a crash that loses it, a reload that changes it.
import { execSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from '@playwright/test';
import { chromiumArgs } from '../playwright.config.js';
import { allowErrors, downloads, expect, generate, kiln, open, setField, test, train } from './helpers.js';

test('a panic in the worker is reported, a new worker takes over, and the last checkpoint loads', async ({ page }) => {
  allowErrors(/panicked|panic on purpose|RuntimeError|unreachable/);
  await open(page, '?backend=cpu');
  await train(page, 3);
  await page.fill('#ckpt-name', 'before-panic');
  await page.click('#save-browser');
  await expect(page.locator('#ckpt-status')).toHaveText('Saved "before-panic" in this browser at step 3.');
  const text = await generate(page, 4);
  await kiln(page, 'debugPanic()');
  await expect(page.locator('#error-text')).toContainText('a panic on purpose');
  await expect(page.locator('#recover')).toHaveText('Load "before-panic" (step 3)');
  expect(await kiln(page, 'restarts')).toBe(1);
  await page.click('#recover');
  await expect(page.locator('#ckpt-status')).toHaveText('Loaded "before-panic" at step 3.');
  expect(await generate(page, 4)).toBe(text);
  await train(page, 5);
  expect((await kiln(page, 'history')).map((p) => p.step)).toEqual([1, 2, 3, 4, 5]);
});

test('a model trained on an uploaded text survives save, reload and an immediate Load', async ({ page }) => {
  // As a new user: no backend forced (the page times both), a text of one's own (160 kB of
  // Milton: 65 characters, where the bundled Shakespeare has 76).
  await open(page, '');
  const milton = readFileSync(new URL('../web/data/milton.txt', import.meta.url), 'utf8').slice(0, 160_000);
  await page.setInputFiles('#file', { name: 'paradise.txt', mimeType: 'text/plain', buffer: Buffer.from(milton) });
  await expect(page.locator('#corpus-stats')).toContainText('paradise.txt');
  await expect(page.locator('#tok-stats')).toHaveText('65 tokens');
  await train(page, 40);
  const before = await generate(page, 3);
  await page.fill('#ckpt-name', 'paradise');
  await page.click('#save-browser');
  await expect(page.locator('#ckpt-status')).toHaveText('Saved "paradise" in this browser at step 40.');
  await page.reload();
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  await page.locator('#saved tr[data-name="paradise"] button.load').click();
  await expect(page.locator('#ckpt-status')).toHaveText('Loaded "paradise" at step 40.');
  await expect(page.locator('#corpus-stats')).toContainText('paradise.txt');
  expect(await generate(page, 3)).toBe(before);
});

test('a checkpoint file whose tokenizer cannot read the current text is refused with a sentence', async ({ page }) => {
  await open(page, '?backend=cpu');
  const milton = readFileSync(new URL('../web/data/milton.txt', import.meta.url), 'utf8').slice(0, 160_000);
  const paradise = { name: 'paradise.txt', mimeType: 'text/plain', buffer: Buffer.from(milton) };
  await page.setInputFiles('#file', paradise);
  await expect(page.locator('#tok-stats')).toHaveText('65 tokens');
  await train(page, 12);
  const before = await generate(page, 3);
  const uploads = await downloads(page, '#download', 3);
  await page.reload();
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  // The page's text is Shakespeare again, whose '[' the model never saw.
  await page.setInputFiles('#upload', uploads);
  await expect(page.locator('#error-text')).toContainText('cannot read the loaded text');
  await page.setInputFiles('#file', paradise);
  await page.setInputFiles('#upload', uploads);
  await expect(page.locator('#ckpt-status')).toHaveText('Loaded the uploaded checkpoint at step 12.');
  expect(await generate(page, 3)).toBe(before);
});

test('a GPU device lost mid-training: reported, the autosave survives, and the run resumes from it', async ({ page }) => {
  allowErrors(/panicked|RuntimeError|unreachable|lost|destroyed/i);
  await open(page, '?backend=wgpu');
  await page.fill('#ckpt-name', 'gpu-run');
  await page.fill('#autosave', '2');
  await setField(page, 'train.max_steps', 12);
  await setField(page, 'train.eval_interval', 0);
  await page.click('#train');
  await expect(page.locator('#ckpt-status')).toHaveText(/^Saved "gpu-run" in this browser at step [2-9]\.$/, { timeout: 240_000 });
  const saved = Number((await page.locator('#ckpt-status').textContent()).match(/step (\d+)/)[1]);
  const losses = (await kiln(page, 'history')).map((p) => p.loss).slice(0, saved);
  expect((await kiln(page, 'debugLoseDevice()')).devices).toBeGreaterThan(0);
  await expect(page.locator('#error-text')).toContainText('The GPU device was lost');
  const recover = page.locator('#recover');
  await expect(recover).toHaveText(/^Load "gpu-run" \(step \d+\)$/);
  const step = Number((await recover.textContent()).match(/step (\d+)/)[1]);
  expect(step).toBeGreaterThanOrEqual(saved);
  await recover.click();
  await expect(page.locator('#ckpt-status')).toHaveText(`Loaded "gpu-run" at step ${step}.`);
  expect(await kiln(page, 'backend')).toBe('wgpu');
  expect((await kiln(page, 'history')).map((p) => p.loss).slice(0, saved)).toEqual(losses);
  await train(page, 12);
  expect((await kiln(page, 'history')).map((p) => p.step).at(-1)).toBe(12);
});

test('a GPU that computes wrong is caught at start and during a run; a NaN loss stops the run', async ({ page }) => {
  await open(page, '?backend=wgpu');
  const good = await kiln(page, 'gpuCheck');
  expect(good.agree).toBe(true);
  expect(good.difference).toBeLessThan(1e-3);
  console.log(`GPU check at start: ${(await kiln(page, 'timings.gpuCheck')).toFixed(0)} ms, difference ${good.difference}`);
  // The fused attention kernel's output, ×1.5: the start-up check catches it.
  await kiln(page, 'debugCorruptKernel(1.5)');
  const bad = await kiln(page, 'verifyGpu()');
  expect(bad.agree).toBe(false);
  await expect(page.locator('#gpu-warning-text')).toContainText('disagree with the CPU\'s on a test computation');
  expect(await kiln(page, 'backend')).toBe('cpu');
  // Back on WebGPU by hand: the check every 2 steps stops the run and moves it to the CPU.
  await page.selectOption('#backend', 'wgpu');
  await expect.poll(() => kiln(page, 'backend')).toBe('wgpu');
  await page.fill('#check-every', '2');
  await setField(page, 'train.max_steps', 8);
  await setField(page, 'train.eval_interval', 0);
  await page.click('#train');
  await expect(page.locator('#gpu-warning-text')).toContainText('at step 2', { timeout: 120_000 });
  await expect.poll(() => kiln(page, 'backend')).toBe('cpu');
  await expect(page.locator('#train')).toBeEnabled();
  expect(await kiln(page, 'step')).toBe(2);
  // A NaN loss: the run stops at once and the weights stay those of the last good step.
  await page.selectOption('#backend', 'wgpu');
  await expect.poll(() => kiln(page, 'backend')).toBe('wgpu');
  await kiln(page, 'debugCorruptKernel(NaN)');
  await page.click('#train');
  await expect(page.locator('#error-text')).toContainText('the loss became NaN');
  await expect(page.locator('#train')).toBeEnabled();
  expect(await kiln(page, 'step')).toBe(2);
  await kiln(page, 'debugCorruptKernel(1)');
  await page.fill('#check-every', '0');
  await page.click('#train');
  await expect(page.locator('#eta')).toHaveText('done', { timeout: 240_000 });
  const history = await kiln(page, 'history');
  expect(history.map((p) => p.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  expect(history.every((p) => Number.isFinite(p.loss))).toBe(true);
});

// 50 steps on the CPU; 20 on SwiftShader, where a step costs ~1 s (50 passed there too, once,
// in 3.1 minutes: docs/reliability.md).
for (const [backend, steps] of [['cpu', 50], ['wgpu', 20]]) {
  test(`the same seed on ${backend} gives the same losses for ${steps} steps`, async ({ page }) => {
    await open(page, `?backend=${backend}`);
    await setField(page, 'model.block_size', 16);
    await setField(page, 'train.batch_size', 2);
    await train(page, steps);
    const first = (await kiln(page, 'history')).map((p) => p.loss);
    await train(page, steps); // a finished run starts over: a fresh model from the same seed
    expect((await kiln(page, 'history')).map((p) => p.loss)).toEqual(first);
    expect(first.at(-1)).toBeLessThan(first[0]);
  });
}

test('a browser killed mid-training resumes from its last reported autosave', async ({ baseURL }) => {
  const profile = mkdtempSync(join(tmpdir(), 'kiln-kill-'));
  const launch = async () => {
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium', args: [...chromiumArgs, '--enable-unsafe-webgpu'], baseURL,
    });
    const page = context.pages()[0] ?? await context.newPage();
    await open(page, '?backend=cpu');
    return { context, page };
  };
  let { context, page } = await launch();
  await page.fill('#ckpt-name', 'killed');
  await page.fill('#autosave', '3');
  await setField(page, 'train.max_steps', 100000);
  await setField(page, 'train.eval_interval', 0);
  await page.click('#train');
  // Several autosaves in: the page reports each one once it is written.
  const status = page.locator('#ckpt-status');
  await expect.poll(async () => Number((/^Saved "killed" in this browser at step (\d+)\.$/.exec(
    await status.textContent()) ?? [])[1] ?? 0), { timeout: 240_000 }).toBeGreaterThanOrEqual(9);
  const reported = Number(/step (\d+)/.exec(await status.textContent())[1]);
  // The browser and all its processes ([d]: the pattern must not match this shell's own line).
  execSync(`pkill -KILL -f -- '--user-data-[d]ir=${profile}'`);
  await context.close().catch(() => {});
  ({ context, page } = await launch());
  const row = page.locator('#saved tr[data-name="killed"]');
  const saved = Number(await row.locator('td').nth(1).textContent());
  // What the page reported as saved survived the kill (a later autosave may have finished too).
  expect(saved).toBeGreaterThanOrEqual(reported);
  await row.locator('button.load').click();
  await expect(page.locator('#ckpt-status')).toHaveText(`Loaded "killed" at step ${saved}.`);
  await train(page, saved + 2);
  expect((await kiln(page, 'history')).map((p) => p.step).at(-1)).toBe(saved + 2);
  await context.close();
  rmSync(profile, { recursive: true, force: true });
});
