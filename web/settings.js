// The page's settings in its address, so a setup can be passed on as a link:
// `?preset=tiny&n_layer=4&lr=0.002&tokenizer=bpe&vocab=512&temperature=0.9`. One table says what
// can be shared; anything else in an address is reported to the user, never silently ignored.

/** Settings kept in elements by id: URL name → [element id, kind]. */
const ELEMENTS = {
  tokenizer: ['tok-kind', ['char', 'bpe', 'wordpiece']],
  vocab: ['bpe-vocab', 'integer'],
  temperature: ['temperature', 'number'],
  top_k: ['top-k', 'integer'],
  top_p: ['top-p', 'number'],
  max_tokens: ['max-tokens', 'integer'],
  seed: ['seed', 'integer'],
  sample_tokens: ['sample-tokens', 'integer'],
};


/** `value` as a setting of `kind`, or an Error saying why it is not one. */
function parse(name, value, kind) {
  if (Array.isArray(kind)) {
    if (kind.includes(value)) return value;
    return new Error(`${name}=${value}: choose ${kind.join(' or ')}`);
  }
  if (kind === 'boolean') {
    if (['true', '1'].includes(value)) return true;
    if (['false', '0'].includes(value)) return false;
    return new Error(`${name}=${value}: use true or false`);
  }
  const n = value.trim() === '' ? NaN : Number(value);
  if (!Number.isFinite(n)) return new Error(`${name}=${value} is not a number`);
  if (kind === 'integer' && !Number.isInteger(n)) return new Error(`${name}=${value} is not a whole number`);
  return n;
}

/** The model and training fields (`data-key="model.n_layer"`), by their short URL name. */
const fieldsByName = (fields) => Object.fromEntries(fields.map((f) => [f.dataset.key.split('.')[1], f]));
const fieldKind = (field) => {
  if (field.type === 'checkbox') return 'boolean';
  if (field.tagName === 'SELECT') return [...field.options].map((o) => o.value);
  return 'number';
};

/** A field's value as the preset holds it: a checkbox's state, a choice's name, else a number. */
export function fieldValue(field) {
  if (field.type === 'checkbox') return field.checked;
  if (field.tagName === 'SELECT') return field.value;
  return Number(field.value);
}

/**
 * Reads `search` (location.search): `{preset, backend, elements: [[id, value]], fields: {key: value},
 * problems: [sentence]}`; values already checked for their kind (ranges are the model's to check).
 */
export function readAddress(search, fields, presets) {
  const byName = fieldsByName(fields);
  /** Settings main.js reads itself. */
  const others = { preset: presets, backend: ['cpu', 'wgpu'] };
  const out = { elements: [], fields: {}, problems: [] };
  for (const [name, value] of new URLSearchParams(search)) {
    let parsed;
    if (name in others) parsed = parse(name, value, others[name]);
    else if (name in ELEMENTS) parsed = parse(name, value, ELEMENTS[name][1]);
    else if (name in byName) parsed = parse(name, value, fieldKind(byName[name]));
    else {
      out.problems.push(`"${name}" is not a setting Kiln knows`);
      continue;
    }
    if (parsed instanceof Error) out.problems.push(parsed.message);
    else if (name in others) out[name] = parsed;
    else if (name in ELEMENTS) out.elements.push([ELEMENTS[name][0], parsed]);
    else out.fields[byName[name].dataset.key] = parsed;
  }
  return out;
}

/**
 * The address of the current setup: the preset, the fields that differ from it, and the other
 * settings that differ from the page's defaults.
 */
export function address(presetName, defaults, fields) {
  const query = new URLSearchParams({ preset: presetName });
  for (const [name, field] of Object.entries(fieldsByName(fields))) {
    const [part, key] = field.dataset.key.split('.');
    const value = fieldValue(field);
    if (value !== defaults[part][key]) query.set(name, String(value));
  }
  for (const [name, [id]] of Object.entries(ELEMENTS)) {
    const element = document.getElementById(id);
    const initial = element.tagName === 'SELECT' ? element.options[0].value : element.defaultValue;
    if (element.value !== initial) query.set(name, element.value);
  }
  return `${location.origin}${location.pathname}?${query}`;
}
