// Checkpoints kept in the browser: in the origin-private file system (OPFS) where there is one,
// else in IndexedDB. A checkpoint is the three files of a checkpoint on disk (checkpoint.json,
// model.safetensors, optimizer.safetensors) plus the run's chart history.
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

/** What the list shows, from a checkpoint: `{name, date, bytes, step, model}`. */
function summary(name, ckpt) {
  const meta = JSON.parse(ckpt.meta);
  const bytes = ckpt.weights.byteLength + (ckpt.optimizer?.byteLength ?? 0) + ckpt.meta.length;
  return { name, date: new Date().toISOString(), bytes, step: meta.step, model: meta.model };
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

  async save(name, ckpt, history) {
    const dir = await (await this.root()).getDirectoryHandle(name, { create: true });
    const version = `v${Date.now()}`;
    const files = await dir.getDirectoryHandle(version, { create: true });
    await this.write(files, FILES.weights, ckpt.weights);
    if (ckpt.optimizer) await this.write(files, FILES.optimizer, ckpt.optimizer);
    await this.write(files, FILES.meta, new TextEncoder().encode(ckpt.meta));
    await this.write(files, FILES.history, encode(history));
    await this.write(files, 'info.json', encode(summary(name, ckpt)));
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
    const files = await this.version(name);
    const optional = (file) => this.read(files, file).catch(() => null);
    const history = await optional(FILES.history);
    return {
      meta: await this.read(files, FILES.meta),
      weights: await this.read(files, FILES.weights),
      optimizer: await optional(FILES.optimizer),
      history: history ? decode(history) : [],
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
  },
};

// ---- IndexedDB ----------------------------------------------------------------------------------

const idb = {
  store: null,
  db() {
    this.store ??= createStore('kiln', 'checkpoints');
    return this.store;
  },
  save(name, ckpt, history) {
    const record = { ...ckpt, meta: new TextEncoder().encode(ckpt.meta), history };
    return setMany([[`info:${name}`, summary(name, ckpt)], [`data:${name}`, record]], this.db());
  },
  async load(name) {
    const record = await get(`data:${name}`, this.db());
    if (!record) throw new Error(`No checkpoint named "${name}" in this browser.`);
    return record;
  },
  async list() {
    const names = (await keys(this.db())).filter((k) => k.startsWith('info:'));
    return getMany(names, this.db());
  },
  remove(name) {
    return delMany([`info:${name}`, `data:${name}`], this.db());
  },
};

// ---- the API ------------------------------------------------------------------------------------

/** Where checkpoints go in this browser. */
export const kind = () => (navigator.storage?.getDirectory ? 'opfs' : 'indexeddb');
const backend = () => (kind() === 'opfs' ? opfs : idb);

/** Saves `{meta, weights, optimizer?}` and the chart history under `name`, replacing it whole. */
export const save = (name, ckpt, history) => backend().save(name, ckpt, history);
/** `{meta, weights, optimizer, history}` saved under `name`. */
export const load = (name) => backend().load(name);
/** `[{name, date, bytes, step, model}]`, by name. */
export const list = async () => (await backend().list()).sort((a, b) => a.name.localeCompare(b.name));
export const remove = (name) => backend().remove(name);
