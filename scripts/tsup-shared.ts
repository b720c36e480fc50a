import type { Options } from 'tsup';

// esbuild's CommonJS output gives module.exports one getter per export (`__toCommonJS`), which
// keeps ES live bindings. Every `import_core.CallScope` in another package's CommonJS build then
// called a getter whose `from[key]`, one function for every name, is a megamorphic keyed load
// (~300 instructions a read under callgrind); and an entry whose first names another entry had
// defined with getters of its own (limit's /express and /fastify both export `loadShedding`)
// got an exports object V8 keeps as a dictionary. Our exports are bound once, when the module
// loads: a frozen object of plain data properties, made once the module's code has run, gives
// the same values and the same read-only, non-configurable names, in V8's fast mode.

type Plugin = NonNullable<Options['plugins']>[number];

/** What {@link dataExports} made of one CommonJS file. */
export interface DataExports {
  readonly code: string;
  /** Exports the module assigns again after their declaration: kept as getters, to stay live. */
  readonly live: readonly string[];
}

const NAME = String.raw`[A-Za-z_$][\w$]*`;
const KEY = String.raw`(?:${NAME}|"[^"\\]*")`;
/** One line of esbuild's `__export(target, { ... })`: `  name: () => local,` or `() => import_x.name`. */
const ENTRY = new RegExp(String.raw`^\s*(${KEY}): \(\) => (${NAME}(?:\.${NAME})?),?$`);

/**
 * Rewrites one CommonJS file of esbuild's: after the module's code, module.exports becomes a
 * frozen object of data properties, `__esModule` non-enumerable as esbuild made it. The getter
 * object stays module.exports while the module runs, so a require() cycle still sees live
 * values. A file without esbuild's `__toCommonJS` is returned as it is; one whose export list
 * is not in the form this reads fails the build, so that no package keeps getters unnoticed.
 */
export function dataExports(code: string, file = 'a CommonJS file'): DataExports {
  const target = /^module\.exports = __toCommonJS\((\w+)\);$/m.exec(code)?.[1];
  if (target === undefined) return { code, live: [] };
  if (/\b__reExport\(/.test(code)) {
    // `export *` copies another module's getters at run time: there is no list to write out.
    throw new Error(`${file}: export * is not supported by the data-property exports: name the exports`);
  }
  const start = code.indexOf(`\n__export(${target}, {\n`);
  const end = code.indexOf('\n});\n', start);
  if (start === -1 || end === -1) throw new Error(`${file}: no __export(${target}, { ... }) list found`);
  const entries = code
    .slice(code.indexOf('\n', start + 1) + 1, end)
    .split('\n')
    .map((line) => {
      const m = ENTRY.exec(line);
      if (m === null) throw new Error(`${file}: cannot read the export line ${JSON.stringify(line)}`);
      return { key: m[1] as string, value: m[2] as string };
    });
  const live = entries.filter((e) => !e.value.includes('.') && assignedLater(code, e.value));
  // In esbuild's order (sorted), a live one as a literal getter: Object.keys() lists them as before.
  const props = entries
    .map((e) => {
      if (live.includes(e)) return `  get ${e.key}() { return ${e.value}; }`;
      return e.key === e.value ? `  ${e.key}` : `  ${e.key}: ${e.value}`;
    })
    .join(',\n');
  const tail =
    '\n// module.exports as frozen data properties, not getters: V8 keeps it in fast mode (scripts/tsup-shared.ts).\n' +
    `module.exports = Object.freeze(Object.defineProperty({\n${props}\n}, "__esModule", { value: true }));\n`;
  return { code: `${code.endsWith('\n') ? code : `${code}\n`}${tail}`, live: live.map((e) => e.key) };
}

/**
 * Whether the bundle assigns `local` anywhere but in its `var local = ...` declaration (an
 * `export let` set later, as core's `carry` is from a static block). A local of the same name
 * in some function counts too: that only keeps one getter more, never freezes a live binding.
 */
function assignedLater(code: string, local: string): boolean {
  const name = local.replace(/\$/g, '\\$');
  const assign = new RegExp(
    String.raw`(?<![\w$.])${name}\s*(?:[-+*/%&|^]|\*\*|<<|>>>?|&&|\|\||\?\?)?=(?![=>])|(?:\+\+|--)\s*${name}(?![\w$])|(?<![\w$.])${name}\s*(?:\+\+|--)`,
    'g',
  );
  const declared = new RegExp(`^var ${name} =`, 'm').test(code) ? 1 : 0;
  return (code.match(assign)?.length ?? 0) > declared;
}

/** The tsup plugin every package's tsup.config.ts uses: {@link dataExports} on each CommonJS entry. */
export const cjsDataExports: Plugin = {
  name: 'holdfast:cjs-data-exports',
  renderChunk(code, chunk) {
    if (this.format !== 'cjs') return undefined;
    const out = dataExports(code, chunk.path);
    if (out.live.length > 0) this.logger.info('CJS', `${chunk.path}: live (getter) exports ${out.live.join(', ')}`);
    // Lines are only added after the last one: a source map of the chunk still holds.
    return { code: out.code, map: chunk.map };
  },
};
