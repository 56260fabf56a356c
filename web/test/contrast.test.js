// Every text colour of both themes meets WCAG AA (4.5:1) on the backgrounds
// it is drawn on, measured from the colour tokens in web/static/style.css.
// Run: node --test web/test/
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');

const CSS = fs.readFileSync(path.join(__dirname, '../static/style.css'), 'utf8');
const AA = 4.5;

/** The `--name: value` declarations of every rule whose selector is `selector`, later ones winning. */
function tokens(selector) {
  const out = {};
  let at = CSS.indexOf(selector + ' {');
  assert.ok(at >= 0, 'style.css has no `' + selector + '` rule');
  while (at >= 0) {
    // Only a rule that starts a line (with the selector's own indent).
    const body = CSS.slice(at, CSS.indexOf('}', at));
    if (at === 0 || CSS[at - 1] === '\n') {
      for (const m of body.matchAll(/(--[a-z0-9-]+)\s*:\s*([^;]+);/g)) out[m[1]] = m[2].trim();
    }
    at = CSS.indexOf(selector + ' {', at + 1);
  }
  return out;
}

/** [r, g, b, a] from `#rgb`, `#rrggbb` or `rgb(a)(…)`. */
function parseColor(v) {
  let m = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(v);
  if (m) {
    const h = m[1].length === 3 ? m[1].replace(/./g, '$&$&') : m[1];
    return [0, 2, 4].map((i) => parseInt(h.slice(i, i + 2), 16)).concat(1);
  }
  m = /^rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*(?:,\s*([\d.]+)\s*)?\)$/i.exec(v);
  assert.ok(m, 'not a colour: ' + v);
  return [+m[1], +m[2], +m[3], m[4] == null ? 1 : +m[4]];
}

/** `top` painted over the opaque `under`. */
function over(top, under) {
  const a = top[3];
  return [0, 1, 2].map((i) => top[i] * a + under[i] * (1 - a)).concat(1);
}

function luminance(c) {
  const lin = c.slice(0, 3).map((v) => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  });
  return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2];
}

function ratio(a, b) {
  const x = luminance(a), y = luminance(b);
  return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
}

const LIGHT = tokens(':root');
// The dark theme overrides some tokens; the rest cascade from :root.
const DARK_OWN = tokens(':root[data-theme="dark"]');
const DARK = Object.assign({}, LIGHT, DARK_OWN);
const DARK_AUTO = tokens('  :root:not([data-theme="light"])');

// Text tokens drawn straight on the page's surfaces.
const TEXT = ['--text', '--text-dim', '--text-faint', '--accent', '--green', '--amber', '--red'];
const SURFACES = ['--bg', '--bg-sidebar', '--surface', '--surface-2', '--surface-3', '--code-bg'];
// Text on a translucent tint (pills, badges, banners, the approval box),
// which itself lies on a surface.
const TINTED = [
  ['--green', '--green-soft'], ['--amber', '--amber-soft'], ['--red', '--red-soft'],
  ['--text', '--amber-soft'], ['--text', '--red-soft'], ['--text-dim', '--amber-soft'],
  ['--text-faint', '--red-soft']
];
const TINT_BASES = ['--bg', '--surface', '--surface-2'];
// Text on a solid fill of its own.
const FILLED = [
  ['--accent-text', '--accent'], ['--accent-text', '--accent-hover'],
  ['--user-text', '--user-bubble'],
  ['--on-status', '--red'], ['--on-status', '--green'],
  ['--term-text', '--term-bg'], ['--term-err', '--term-bg'],
  // Terminal output: the 16 ANSI colours on the output box, and the box's
  // own colour as text on the two light ANSI backgrounds.
  ...Array.from({ length: 16 }, (_, i) => ['--ansi-' + i, '--term-bg']),
  ['--term-bg', '--ansi-bg-7'], ['--term-bg', '--ansi-bg-15'],
  // Default output text on every other ANSI background.
  ...[0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14].map((i) => ['--term-text', '--ansi-bg-' + i]),
  // Highlighted code on the code background.
  ...['comment', 'keyword', 'string', 'number', 'function', 'type', 'builtin', 'tag', 'deleted', 'inserted', 'punct']
    .map((t) => ['--syn-' + t, '--code-bg'])
];
// Set at run time from the command's own 24-bit colour (and lifted to a
// readable lightness by the stylesheet): no fixed value to measure.
const RUNTIME = ['--ansi-fg'];

/** Every text/background pair of one theme with its ratio. */
function measure(t) {
  const c = (name) => {
    assert.ok(t[name], 'missing token ' + name);
    return parseColor(t[name]);
  };
  const rows = [];
  for (const fg of TEXT) for (const bg of SURFACES) rows.push([fg, bg, ratio(c(fg), c(bg))]);
  for (const [fg, tint] of TINTED) {
    for (const base of TINT_BASES) rows.push([fg, tint + ' on ' + base, ratio(c(fg), over(c(tint), c(base)))]);
  }
  for (const [fg, bg] of FILLED) rows.push([fg, bg, ratio(c(fg), c(bg))]);
  rows.push(['--term-err', '--term-err-bg on --term-bg', ratio(c('--term-err'), over(c('--term-err-bg'), c('--term-bg')))]);
  return rows;
}

for (const [name, theme] of [['light', LIGHT], ['dark', DARK]]) {
  test(name + ' theme: every text colour is at least 4.5:1 on its backgrounds', () => {
    const low = measure(theme).filter((r) => r[2] < AA).map((r) => r[0] + ' on ' + r[1] + ': ' + r[2].toFixed(2) + ':1');
    assert.deepStrictEqual(low, []);
  });
}

test('the dark theme chosen by the system is the same as the one chosen in the page', () => {
  assert.deepStrictEqual(DARK_AUTO, DARK_OWN);
});

test('every colour token used for text in style.css is measured', () => {
  const measured = new Set(TEXT.concat(FILLED.map((p) => p[0]), RUNTIME));
  const used = new Set();
  for (const m of CSS.matchAll(/(?:^|[;{\s])color\s*:\s*var\((--[a-z0-9-]+)\)/g)) used.add(m[1]);
  const unmeasured = [...used].filter((t) => !measured.has(t));
  assert.deepStrictEqual(unmeasured, []);
});

test('ratios match the WCAG definition', () => {
  assert.strictEqual(ratio(parseColor('#000'), parseColor('#fff')).toFixed(1), '21.0');
  assert.strictEqual(ratio(parseColor('#777777'), parseColor('#ffffff')).toFixed(2), '4.48');
  assert.deepStrictEqual(over(parseColor('rgba(0, 0, 0, 0.5)'), parseColor('#ffffff')), [127.5, 127.5, 127.5, 1]);
});
