// Walks a running ODI network's pages in Debian's Chromium (headless, driven by playwright-core)
// the way a person would, checks each page with axe-core and saves a screenshot of each.
//
//   node browse.mjs <directory URL> <screenshot folder>
//
// Prints one JSON line per page visited and exits non-zero, naming what failed, when a page
// does not load, a link is missing, a download's bytes do not match the SHA-256 the listing
// shows, a script runs from repository text, or axe reports a serious or critical violation.
// Run by agent/tests/it/web.rs; installed by ci/install-test-deps.sh.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const [base, shots] = process.argv.slice(2);
if (!base || !shots) {
  console.error('usage: node browse.mjs <directory URL> <screenshot folder>');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const failures = [];
const fail = (msg) => { failures.push(msg); console.error(`FAIL ${msg}`); };
try {
  // The pages forbid every script by CSP; axe is injected by the test, so only this context
  // bypasses it. A phone-sized viewport: the pages must read well there.
  const context = await browser.newContext({ bypassCSP: true, viewport: { width: 412, height: 915 } });
  const page = await context.newPage();
  page.on('dialog', async (d) => { fail(`a dialog opened (${d.message()}): repository text ran as script`); await d.dismiss(); });
  page.on('pageerror', (e) => fail(`script error on ${page.url()}: ${e.message}`));

  const check = async (name) => {
    const status = await page.evaluate(() => document.readyState);
    await page.addScriptTag({ content: axeSource });
    const result = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ['violations'] }));
    const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    for (const v of bad) {
      fail(`${name} (${page.url()}): axe ${v.impact} ${v.id}: ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join('; ')}`);
    }
    await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
    const title = await page.title();
    console.log(JSON.stringify({ page: name, url: page.url(), title, state: status,
      violations: result.violations.map((v) => `${v.impact} ${v.id}`) }));
  };
  const go = async (url, name) => {
    const resp = await page.goto(url);
    if (!resp || resp.status() !== 200) fail(`${name}: ${url} answered ${resp && resp.status()}`);
    await check(name);
  };
  const follow = async (locator, name) => {
    if ((await locator.count()) === 0) { fail(`${name}: no link to follow on ${page.url()}`); return false; }
    await Promise.all([page.waitForLoadState('load'), locator.first().click()]);
    await page.waitForLoadState('load');
    await check(name);
    return true;
  };

  // Landing -> catalog -> folder -> artifact (download through the redirect) -> mirror list.
  await go(base, 'landing');
  const cards = await page.locator('.cards').innerText();
  if (!cards.includes('<script>alert(1)</script>')) fail(`landing: the catalog description is not shown as text: ${cards}`);
  if (await page.evaluate(() => document.querySelectorAll('main script').length) !== 0) fail('landing: a script element came from repository text');
  await follow(page.locator('.cards h3 a'), 'catalog');
  await follow(page.locator('tbody th a[href$="/"]'), 'folder');
  const file = page.locator('tbody tr:not(.expunged) th a').first();
  const href = await file.getAttribute('href');
  const row = file.locator('xpath=ancestor::tr');
  const shown = await row.locator('code').getAttribute('title');
  const dl = await page.request.get(new URL(href, page.url()).toString());
  const sha = createHash('sha256').update(await dl.body()).digest('hex');
  if (dl.status() !== 200 || sha !== shown) fail(`download ${href}: status ${dl.status()}, sha256 ${sha}, the listing says ${shown}`);
  console.log(JSON.stringify({ download: href, status: dl.status(), sha256: sha, from: dl.url() }));
  await follow(row.locator('a', { hasText: 'mirrors' }), 'mirrorlist');
  const offered = await page.locator('tbody tr').count();
  if (offered === 0) fail('mirrorlist: no relay listed');

  // Status -> a relay's own page.
  await follow(page.locator('nav[aria-label="Site"] a', { hasText: 'Status' }), 'status');
  const relayLink = page.locator('tr[id^="relay-"] th a');
  await follow(relayLink, 'relay');
  if (!(await page.locator('main').innerText()).includes('a relay of an ODI network')) fail('relay: not the relay page');

  await go(new URL('/stats', base).toString(), 'statistics');
  if ((await page.locator('figure.chart svg').count()) < 3) fail('statistics: fewer than three charts');
} finally {
  await browser.close();
}
if (failures.length) {
  console.error(`${failures.length} failure(s)`);
  process.exit(1);
}
