// Checks for web/static/syntax.js with the vendored Prism. Run: node --test web/test/
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const Prism = require('../static/vendor/prism/prism.min.js');
const syntax = require('../static/syntax.js');

const text = (nodes) => nodes.map((n) => (typeof n === 'string' ? n : text(n.c))).join('');
const spans = (nodes, out = []) => {
  nodes.forEach((n) => { if (typeof n !== 'string') { out.push([n.cls, text(n.c)]); spans(n.c, out); } });
  return out;
};

test('python: keywords, strings and comments get token classes; the text is unchanged', () => {
  const code = 'def f(x):\n    return "hi"  # done\n';
  const nodes = syntax.tokens(Prism, code, 'python');
  assert.strictEqual(text(nodes), code);
  const s = spans(nodes);
  assert.ok(s.some(([c, t]) => c === 'token keyword' && t === 'def'), JSON.stringify(s));
  assert.ok(s.some(([c, t]) => c === 'token string' && t === '"hi"'), JSON.stringify(s));
  assert.ok(s.some(([c, t]) => c === 'token comment' && t === '# done'), JSON.stringify(s));
});

test('bash, also as "shell" and "sh"', () => {
  for (const lang of ['bash', 'shell', 'sh', 'console']) {
    const s = spans(syntax.tokens(Prism, 'for i in 1 2; do echo "$i"; done', lang));
    assert.ok(s.some(([c, t]) => c === 'token keyword' && t === 'for'), lang + ' ' + JSON.stringify(s));
  }
});

test('unknown languages, inherited names and huge blocks stay plain', () => {
  assert.strictEqual(syntax.tokens(Prism, 'x', 'nosuchlang'), null);
  assert.strictEqual(syntax.tokens(Prism, 'x', 'constructor'), null);
  assert.strictEqual(syntax.tokens(Prism, 'x', '__proto__'), null);
  assert.strictEqual(syntax.tokens(Prism, 'x', ''), null);
  assert.strictEqual(syntax.tokens(Prism, 'x'.repeat(syntax.MAX_CODE + 1), 'python'), null);
});

test('markup in code is text in the token tree, never markup', () => {
  const code = '<img src=x onerror="alert(1)"><script>alert(1)</script>';
  for (const lang of ['html', 'python', 'bash', 'javascript']) {
    const nodes = syntax.tokens(Prism, code, lang);
    assert.strictEqual(text(nodes), code, lang);
    for (const [cls] of spans(nodes)) assert.match(cls, /^token( [\w-]+)+$/, lang);
  }
});
