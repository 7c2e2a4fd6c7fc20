// Checkpoints kept in the browser: in the origin-private file system (OPFS) where there is one,
// else in IndexedDB. A checkpoint is the three files of a checkpoint on disk (checkpoint.json,
// model.safetensors, optimizer.safetensors) plus the run's chart history and the text it trains
// on, so that loading it after a reload restores the whole run. Texts are kept once per content
// (by SHA-256), however many checkpoints and autosaves use them, and go with their last user.
//
// Saves are atomic. In OPFS each save writes a new version folder and then switches the
// `current` pointer to it (written to a temporary file, then moved over the old one); a save that
// dies half-way leaves the pointer on the previous version. In IndexedDB one transaction writes
// the whole checkpoint.
import { createStore, delMany, get, getMany, keys, setMany } from 'idb-keyval';

const FILES = {
  meta: 'checkpoint.json',
  weights: 'model.safetensors',
  optimizer: 'optimizer.safetensors',
  history: 'history.json',
};
const encode = (value) => new TextEncoder().encode(JSON.stringify(value));
const decode = (bytes) => JSON.parse(new TextDecoder().decode(bytes));

/** What the list shows, from a checkpoint: `{name, date, bytes, step, model, data}`. */
function summary(name, ckpt, data) {
  const meta = JSON.parse(ckpt.meta);
  const bytes = ckpt.weights.byteLength + (ckpt.optimizer?.byteLength ?? 0) + ckpt.meta.length;
  return { name, date: new Date().toISOString(), bytes, step: meta.step, model: meta.model, data };
}

const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');

/** Each training-files array's description, hashed once however often its run is saved. */
const described = new WeakMap();

/** `{hash, names}` of training files `[{name, bytes}]`: the hash covers names and contents. */
function describeData(files) {
  if (!described.has(files)) described.set(files, hashData(files));
  return described.get(files);
}

async function hashData(files) {
  const hashes = await Promise.all(files.map((f) => crypto.subtle.digest('SHA-256', f.bytes)));
  const all = files.map((f, i) => `${f.name}\0${hex(hashes[i])}`).join('\0');
  return { hash: hex(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(all))), names: files.map((f) => f.name) };
}

// ---- OPFS ---------------------------------------------------------------------------------------

const opfs = {
  async root() {
    return (await navigator.storage.getDirectory()).getDirectoryHandle('checkpoints', { create: true });
  },

  async write(dir, name, bytes) {
    const tmp = await dir.getFileHandle(`${name}.tmp`, { create: true });
    const out = await tmp.createWritable();
    await out.write(bytes);
    await out.close();
    await tmp.move(dir, name);
  },

  async read(dir, name) {
    return new Uint8Array(await (await (await dir.getFileHandle(name)).getFile()).arrayBuffer());
  },

  async datasets() {
    return (await navigator.storage.getDirectory()).getDirectoryHandle('datasets', { create: true });
  },

  /** Keeps `files` under their hash, unless they are kept already (`names` is written last). */
  async keepData(data, files) {
    const dir = await (await this.datasets()).getDirectoryHandle(data.hash, { create: true });
    if (await this.read(dir, 'names.json').catch(() => null)) return;
    for (const [i, f] of files.entries()) await this.write(dir, String(i), f.bytes);
    await this.write(dir, 'names.json', encode(data.names));
  },

  async loadData(data) {
    const dir = await (await this.datasets()).getDirectoryHandle(data.hash);
    return Promise.all(data.names.map(async (name, i) => ({ name, bytes: await this.read(dir, String(i)) })));
  },

  /** Removes the texts no checkpoint uses any more. */
  async dropUnused(used) {
    const dir = await this.datasets();
    const stale = [];
    for await (const hash of dir.keys()) if (!used.has(hash)) stale.push(hash);
    for (const hash of stale) await dir.removeEntry(hash, { recursive: true });
  },

  async save(name, ckpt, history, files) {
    const data = files?.length ? await describeData(files) : null;
    if (data) await this.keepData(data, files);
    const dir = await (await this.root()).getDirectoryHandle(name, { create: true });
    const version = `v${Date.now()}`;
    const folder = await dir.getDirectoryHandle(version, { create: true });
    await this.write(folder, FILES.weights, ckpt.weights);
    if (ckpt.optimizer) await this.write(folder, FILES.optimizer, ckpt.optimizer);
    await this.write(folder, FILES.meta, new TextEncoder().encode(ckpt.meta));
    await this.write(folder, FILES.history, encode(history));
    await this.write(folder, 'info.json', encode(summary(name, ckpt, data)));
    // The switch: until this move the previous version is the checkpoint.
    await this.write(dir, 'current', new TextEncoder().encode(version));
    const stale = [];
    for await (const entry of dir.keys()) if (entry !== version && entry !== 'current') stale.push(entry);
    for (const entry of stale) await dir.removeEntry(entry, { recursive: true });
  },

  async version(name) {
    const dir = await (await this.root()).getDirectoryHandle(name);
    const version = new TextDecoder().decode(await this.read(dir, 'current'));
    return dir.getDirectoryHandle(version);
  },

  async load(name) {
    const folder = await this.version(name);
    const optional = (file) => this.read(folder, file).catch(() => null);
    const history = await optional(FILES.history);
    const { data } = decode(await this.read(folder, 'info.json'));
    return {
      meta: await this.read(folder, FILES.meta),
      weights: await this.read(folder, FILES.weights),
      optimizer: await optional(FILES.optimizer),
      history: history ? decode(history) : [],
      files: data ? await this.loadData(data).catch(() => null) : null,
    };
  },

  async list() {
    const out = [];
    for await (const [name, handle] of (await this.root()).entries()) {
      if (handle.kind !== 'directory') continue;
      // A checkpoint whose first save never finished has no `current` yet: not listed.
      const info = await this.version(name).then((v) => this.read(v, 'info.json')).catch(() => null);
      if (info) out.push(decode(info));
    }
    return out;
  },

  async remove(name) {
    await (await this.root()).removeEntry(name, { recursive: true });
    await this.dropUnused(new Set((await this.list()).map((c) => c.data?.hash).filter(Boolean)));
  },
};

// ---- IndexedDB ----------------------------------------------------------------------------------

const idb = {
  store: null,
  db() {
    this.store ??= createStore('kiln', 'checkpoints');
    return this.store;
  },
  async save(name, ckpt, history, files) {
    const data = files?.length ? await describeData(files) : null;
    const record = { ...ckpt, meta: new TextEncoder().encode(ckpt.meta), history };
    const entries = [[`info:${name}`, summary(name, ckpt, data)], [`data:${name}`, record]];
    // The text is written with its first checkpoint only (autosaves would rewrite it each time).
    if (data && !(await keys(this.db())).includes(`text:${data.hash}`)) entries.push([`text:${data.hash}`, files]);
    return setMany(entries, this.db());
  },
  async load(name) {
    const [info, record] = await getMany([`info:${name}`, `data:${name}`], this.db());
    if (!record) throw new Error(`No checkpoint named "${name}" in this browser.`);
    const files = info?.data ? await get(`text:${info.data.hash}`, this.db()) : null;
    return { ...record, files: files ?? null };
  },
  async list() {
    const names = (await keys(this.db())).filter((k) => k.startsWith('info:'));
    return getMany(names, this.db());
  },
  async remove(name) {
    await delMany([`info:${name}`, `data:${name}`], this.db());
    const used = new Set((await this.list()).map((c) => c.data?.hash).filter(Boolean));
    const stale = (await keys(this.db())).filter((k) => k.startsWith('text:') && !used.has(k.slice(5)));
    await delMany(stale, this.db());
  },
};

// ---- the API ------------------------------------------------------------------------------------

/** Where checkpoints go in this browser. */
export const kind = () => (navigator.storage?.getDirectory ? 'opfs' : 'indexeddb');
const backend = () => (kind() === 'opfs' ? opfs : idb);

/**
 * Saves `{meta, weights, optimizer?}`, the chart history and the training files `[{name,
 * bytes}]` under `name`, replacing it whole.
 */
export const save = (name, ckpt, history, files) => backend().save(name, ckpt, history, files);
/** `{meta, weights, optimizer, history, files}` saved under `name` (`files` null if not kept). */
export const load = (name) => backend().load(name);
/** `[{name, date, bytes, step, model}]`, by name. */
export const list = async () => (await backend().list()).sort((a, b) => a.name.localeCompare(b.name));
export const remove = (name) => backend().remove(name);
