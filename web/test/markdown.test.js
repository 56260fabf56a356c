// Checks for web/static/markdown.js. Run: node --test web/test/
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const md = require('../static/markdown.js');

// A tiny fake DOM: enough to run toDOM and see exactly what it builds.
function fakeDocument() {
  const made = [];
  class Node {
    constructor(kind, tag) { this.kind = kind; this.tag = tag; this.children = []; this.attrs = {}; made.push(this); }
    appendChild(c) { this.children.push(c); return c; }
    setAttribute(k, v) { this.attrs[k] = String(v); }
    get textContent() { return this.kind === 'text' ? this.text : this.children.map((c) => c.textContent).join(''); }
  }
  return {
    made,
    createDocumentFragment: () => new Node('fragment'),
    createElement: (tag) => new Node('element', String(tag).toLowerCase()),
    createTextNode: (t) => { const n = new Node('text'); n.text = String(t); return n; },
  };
}

const html = (s) => md.toHTML(md.parse(s));

// Every tag and attribute in the output must be on the allow-list, and no
// href may carry a scheme other than http, https or mailto.
function assertSafe(out) {
  const tags = out.match(/<\/?[a-zA-Z][^>]*>/g) || [];
  for (const t of tags) {
    const m = /^<\/?([a-zA-Z0-9]+)((?:\s+[^\s=>]+="[^"]*")*)\s*>$/.exec(t);
    assert.ok(m, 'malformed tag in output: ' + t);
    assert.ok(md.TAGS[m[1]], 'tag not allowed: ' + m[1]);
    for (const a of m[2].matchAll(/([^\s=]+)="([^"]*)"/g)) {
      assert.ok(md.ATTRS[a[1]], 'attribute not allowed: ' + a[1]);
      assert.ok(!/^on/i.test(a[1]), 'event handler attribute: ' + a[1]);
      if (a[1] === 'href') assert.match(a[2], /^(https?:\/\/|mailto:)/i);
    }
  }
  assert.doesNotMatch(out, /<script|<img|<iframe|<svg|<style|<object|<embed/i);
}

const ATTACKS = [
  '<script>alert(1)</script>',
  '<img src=x onerror=alert(1)>',
  '[x](javascript:alert(1))',
  '[x](JaVaScRiPt:alert(1))',
  '[x](java\tscript:alert(1))',
  '[x]( javascript:alert(1) )',
  '[x](<javascript:alert(1)>)',
  '[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)',
  '[x](vbscript:msgbox)',
  '[x](//evil.example/)',
  '![x](javascript:alert(1))',
  '<javascript:alert(1)>',
  '[a](https://ok.example/" onmouseover="alert(1))',
  '**<b onclick=alert(1)>bold</b>**',
  '`<script>alert(1)</script>`',
  '```html\n<script>alert(1)</script>\n```',
  '```"><img src=x onerror=alert(1)>\ncode\n```',
  '> <iframe src="javascript:alert(1)"></iframe>',
  '| a | b |\n|---|---|\n| <script>x</script> | [y](javascript:z) |',
  '- <svg onload=alert(1)>\n- [z](javascript:alert(1))',
  '# <style>body{display:none}</style>',
  'https://ok.example/"><script>alert(1)</script>',
];

test('attacks produce no executable output (HTML string)', () => {
  for (const a of ATTACKS) {
    const out = html(a);
    assertSafe(out);
    assert.doesNotMatch(out, /href="(?!https?:\/\/|mailto:)/i, a);
  }
});

test('attacks produce no executable output (DOM)', () => {
  for (const a of ATTACKS) {
    const doc = fakeDocument();
    md.render(a, doc);
    for (const n of doc.made) {
      if (n.kind !== 'element') continue;
      assert.ok(md.TAGS[n.tag], 'tag not allowed: ' + n.tag);
      for (const [k, v] of Object.entries(n.attrs)) {
        assert.ok(md.ATTRS[k], 'attribute not allowed: ' + k);
        if (k === 'href') assert.match(v, /^(https?:\/\/|mailto:)/i, a);
      }
    }
  }
});

test('raw HTML is shown as text', () => {
  const doc = fakeDocument();
  const frag = md.render('<script>alert(1)</script>', doc);
  assert.strictEqual(frag.textContent, '<script>alert(1)</script>');
  assert.ok(!doc.made.some((n) => n.tag === 'script'));
  assert.strictEqual(html('<img src=x onerror=alert(1)>'), '<p>&lt;img src=x onerror=alert(1)&gt;</p>');
});

test('unsafe links keep their text but lose the link', () => {
  const out = html('[x](javascript:alert(1))');
  assert.doesNotMatch(out, /<a /);
  assert.match(out, />x</);
});

test('safeUrl', () => {
  assert.strictEqual(md.safeUrl('https://example.com/a?b#c'), 'https://example.com/a?b#c');
  assert.strictEqual(md.safeUrl('mailto:a@b.c'), 'mailto:a@b.c');
  for (const bad of ['javascript:alert(1)', ' javascript:x', 'java\nscript:x', 'data:text/html,x', 'file:///etc/passwd',
    '/relative', '//host/x', 'https:', 'https:///x', 'vbscript:x', '\u0001javascript:x']) {
    assert.strictEqual(md.safeUrl(bad), null, bad);
  }
});

test('headings, emphasis, code, links', () => {
  assert.strictEqual(html('# Title'), '<h1>Title</h1>');
  assert.strictEqual(html('### Three ###'), '<h3>Three</h3>');
  assert.strictEqual(html('a *b* **c** ***d*** ~~e~~ _f_'),
    '<p>a <em>b</em> <strong>c</strong> <strong><em>d</em></strong> <del>e</del> <em>f</em></p>');
  assert.strictEqual(html('snake_case_name stays'), '<p>snake_case_name stays</p>');
  assert.strictEqual(html('2 * 3 * 4'), '<p>2 * 3 * 4</p>');
  assert.strictEqual(html('use `a *b* <c>`'), '<p>use <code>a *b* &lt;c&gt;</code></p>');
  assert.strictEqual(html('``a ` b``'), '<p><code>a ` b</code></p>');
  assert.strictEqual(html('[docs](https://example.com/x_(y))'),
    '<p><a href="https://example.com/x_(y)" target="_blank" rel="noopener noreferrer nofollow">docs</a></p>');
  assert.strictEqual(html('see https://example.com/a.'),
    '<p>see <a href="https://example.com/a" target="_blank" rel="noopener noreferrer nofollow">https://example.com/a</a>.</p>');
  assert.strictEqual(html('\\*not em\\*'), '<p>*not em*</p>');
  assert.strictEqual(html('line one\nline two'), '<p>line one<br>line two</p>');
});

test('fenced code blocks', () => {
  const out = html('```python\nprint("<hi>")\n```');
  assert.match(out, /<div class="code-block"><div class="code-head"><span class="code-lang">python<\/span><button type="button" class="copy-btn"/);
  assert.match(out, /<pre><code class="language-python">print\(&quot;&lt;hi&gt;&quot;\)<\/code><\/pre>/);
  assert.match(html('~~~\nno lang\n~~~'), /<span class="code-lang">text<\/span>/);
  assert.match(html('```\nunclosed'), /<code>unclosed<\/code>/);
  assert.match(html('```sh\n# not a heading\n- not a list\n```'), /<code class="language-sh"># not a heading\n- not a list<\/code>/);
});

test('lists', () => {
  assert.strictEqual(html('- a\n- b'), '<ul><li>a</li><li>b</li></ul>');
  assert.strictEqual(html('3. a\n4. b'), '<ol start="3"><li>a</li><li>b</li></ol>');
  assert.strictEqual(html('- a\n  - b\n- c'), '<ul><li>a<ul><li>b</li></ul></li><li>c</li></ul>');
  assert.strictEqual(html('1. a\n  - b\n2. c'), '<ol><li>a<ul><li>b</li></ul></li><li>c</li></ol>');
  assert.strictEqual(html('- a\n\n- b'), '<ul><li><p>a</p></li><li><p>b</p></li></ul>');
  assert.strictEqual(html('Intro:\n- a\n- b'), '<p>Intro:</p><ul><li>a</li><li>b</li></ul>');
  assert.match(html('1. step\n   ```sh\n   ls\n   ```\n2. next'), /<ol><li>step<div class="code-block">.*<code class="language-sh">ls<\/code>.*<\/li><li>next<\/li><\/ol>/s);
});

test('blockquotes, rules, tables', () => {
  assert.strictEqual(html('> quote\n> more'), '<blockquote><p>quote<br>more</p></blockquote>');
  assert.strictEqual(html('a\n\n---\n\nb'), '<p>a</p><hr><p>b</p>');
  assert.strictEqual(html('| a | b |\n|:--|--:|\n| 1 | `x|y` |'),
    '<div class="table-wrap"><table><thead><tr><th class="align-left">a</th><th class="align-right">b</th></tr></thead>' +
    '<tbody><tr><td class="align-left">1</td><td class="align-right"><code>x|y</code></td></tr></tbody></table></div>');
});

test('odd input does not throw', () => {
  for (const s of ['', '\n\n', '*', '**', '[', '[a](', '`', '```', '> ', '- ', '|', '|-|', '#', '\\', '*a **b* c**',
    '[[a](https://x.y)](https://z.w)', 'a\r\nb', '\u0000', '- \n  \n- ', '~~~~', '_a_b_', '1)', '# ' + '*'.repeat(5000)]) {
    assert.doesNotThrow(() => html(s), s);
  }
});
