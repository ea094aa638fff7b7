// Drives the capacity map in Debian's chromium (headless, through playwright-core)
// for tests/e2e/map.rs, which starts the service and checks what this reports
// against the API and `headroom rank`.
//
//   node tests/browser/map.mjs TASK.json
//
// TASK: {url, token, screenshots (folder), chromium (path),
//        mode: "fixture" | "render" | "generation" (the generation and N-1 views' colours),
//        feeder (id to click), application ({lon, lat, demand_kw, power_factor,
//        voltage_kv?, importance})}
// Prints one JSON object: what was drawn, the time to the first full render, the
// panel's figures, the top scheme of the tried connection, and every URL the page
// requested.
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const task = JSON.parse(readFileSync(process.argv[2], 'utf8'));
mkdirSync(task.screenshots, { recursive: true });

const browser = await chromium.launch({
  executablePath: task.chromium,
  headless: true,
  // Without these chromium reaches for Google's hosts at start, which this
  // machine's closed network refuses.
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});

const requested = [];
const consoleErrors = [];
const report = { requested, console_errors: consoleErrors };

function watch(page) {
  page.on('request', (request) => requested.push(request.url()));
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(message.text());
  });
  page.on('pageerror', (error) => consoleErrors.push(String(error)));
}

const timeout = task.timeout_ms || 120000;

async function ready(page) {
  await page.waitForSelector('body[data-state="ready"]', { timeout });
  return page.evaluate(() => ({
    drawn: window.headroomMap.drawn,
    rendered_ms: window.headroomMap.renderedMs,
  }));
}

// Milliseconds from a zoom in by two levels, or a pan, to the frame after
// Leaflet's moveend.
function timeMove(page, move) {
  return page.evaluate(async (move) => {
    const map = window.headroomMap.map;
    const frame = () => new Promise((r) => requestAnimationFrame(() => r()));
    const started = performance.now();
    await new Promise((resolve) => {
      map.once('moveend', resolve);
      if (move === 'zoom') map.setZoom(map.getZoom() + 2, { animate: false });
      else map.panBy([300, 200], { animate: false });
    });
    await frame();
    await frame();
    return performance.now() - started;
  }, move);
}

async function clickAt(page, x, y) {
  const box = await page.locator('#map').boundingBox();
  await page.mouse.click(box.x + x, box.y + y);
}

try {
  if (task.mode === 'generation') {
    // The switch to the generation view: every asset coloured by its grade.
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    await context.addInitScript((token) => sessionStorage.setItem('headroom.token', token), task.token);
    const page = await context.newPage();
    watch(page);
    await page.goto(`${task.url}/`);
    Object.assign(report, await ready(page));
    report.load_colours = await page.evaluate(() => structuredClone(window.headroomMap.colours));
    await page.selectOption('#view', 'generation');
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    report.generation_colours = await page.evaluate(() => structuredClone(window.headroomMap.colours));
    report.legend = await page.locator('#legend').innerText();
    report.hash = await page.evaluate(() => location.hash);
    await page.screenshot({ path: join(task.screenshots, 'generation.png') });
    // And to the N-1 view: feeders by whether a neighbour takes them.
    await page.selectOption('#view', 'n1');
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    report.n1_colours = await page.evaluate(() => structuredClone(window.headroomMap.colours));
    report.n1_legend = await page.locator('#legend').innerText();
    report.n1_hash = await page.evaluate(() => location.hash);
    await page.screenshot({ path: join(task.screenshots, 'n1.png') });
  } else if (task.mode === 'render') {
    // A first visit with the token already entered: navigation to a full map.
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    await context.addInitScript((token) => sessionStorage.setItem('headroom.token', token), task.token);
    const page = await context.newPage();
    watch(page);
    await page.goto(`${task.url}/`);
    Object.assign(report, await ready(page));
    await page.screenshot({ path: join(task.screenshots, 'city.png') });
    // Responsiveness after the first render: a zoom in and a pan, each to the
    // frame after Leaflet's moveend.
    report.zoom_ms = await timeMove(page, 'zoom');
    report.pan_ms = await timeMove(page, 'pan');
  } else {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    watch(page);
    await page.goto(`${task.url}/`);
    // Signing in through the page's own form, once.
    await page.fill('#token', task.token);
    await page.click('#sign-in-form button[type="submit"]');
    Object.assign(report, await ready(page));
    report.token_kept = await page.evaluate(() => sessionStorage.getItem('headroom.token') !== null);
    await page.screenshot({ path: join(task.screenshots, 'map.png') });

    // Clicking a feeder where it is drawn opens its panel.
    const point = await page.evaluate((id) => window.headroomMap.pointOnFeeder(id), task.feeder);
    if (!point) throw new Error(`feeder ${task.feeder} is not drawn`);
    await clickAt(page, point.x, point.y);
    await page.waitForSelector('#panel [data-field="headroom_kw"]', { timeout });
    report.panel = await page.evaluate(() => {
      const text = (field) => {
        const cell = document.querySelector(`#panel [data-field="${field}"]`);
        return cell ? cell.textContent.trim() : null;
      };
      return {
        title: text('id'),
        headroom_kw: text('headroom_kw'),
        binding_constraint: text('binding_constraint'),
        loading_pct: text('loading_pct'),
        peak_kva: text('peak_kva'),
        reserved_kw: text('reserved_kw'),
        chart_drawn: document.querySelector('#typical-day canvas') !== null,
      };
    });
    report.url_after_click = page.url();
    await page.screenshot({ path: join(task.screenshots, 'feeder-panel.png') });

    // Try a connection at the application's place: zoomed in far enough that
    // the click lands within a metre of it.
    const app = task.application;
    await page.click('#try');
    const at = await page.evaluate(
      ([lat, lon]) => {
        const map = window.headroomMap.map;
        map.setView([lat, lon], 19, { animate: false });
        const p = map.latLngToContainerPoint([lat, lon]);
        return { x: p.x, y: p.y };
      },
      [app.lat, app.lon],
    );
    await clickAt(page, at.x, at.y);
    await page.waitForSelector('#try-form', { timeout });
    await page.fill('#try-form input[name="demand_kw"]', String(app.demand_kw));
    await page.fill('#try-form input[name="power_factor"]', String(app.power_factor ?? 0.9));
    if (app.voltage_kv !== undefined) await page.selectOption('#try-form select[name="voltage_kv"]', String(app.voltage_kv));
    await page.selectOption('#try-form select[name="importance"]', app.importance || 'normal');
    if (app.max_distance_m !== undefined) await page.fill('#try-form input[name="max_distance_m"]', String(app.max_distance_m));
    await page.click('#try-form button[type="submit"]');
    await page.waitForSelector('#schemes, #no-scheme, #try-result .error', { timeout });
    report.tried = await page.evaluate(() => {
      const first = document.querySelector('#schemes li[data-rank="1"]');
      return {
        top_supplies: first ? first.dataset.supplies.split(',') : null,
        top_conductors: first ? [...first.querySelectorAll('.service-line')].map((l) => l.dataset.conductor ?? null) : null,
        top_cost: first?.querySelector('.cost')?.textContent ?? null,
        candidates_listed: document.querySelectorAll('#try-result tbody tr').length,
        error: document.querySelector('#try-result .error')?.textContent ?? null,
      };
    });
    // Out again to see the lines drawn to the candidates.
    await page.evaluate(() => {
      window.headroomMap.map.setZoom(15, { animate: false });
    });
    await page.screenshot({ path: join(task.screenshots, 'try-a-connection.png') });
  }
} finally {
  await browser.close();
}

process.stdout.write(`${JSON.stringify(report)}\n`);
