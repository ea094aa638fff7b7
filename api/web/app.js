// The capacity map: feeders, substations and distribution transformers coloured
// by loading and headroom from GET /v1/capacity, tie switches from GET /v1/map,
// an asset's panel from GET /v1/assets/{id}, and "try a connection" through
// POST /v1/schemes. Every call goes to the service that served this page, with
// the token the user entered (kept in this tab's session storage).
'use strict';

(() => {
  const TOKEN_KEY = 'headroom.token';
  const COLOURS = { green: '#1a9850', amber: '#f39c12', red: '#d73027', grey: '#9e9e9e' };
  const TIE_COLOUR = '#6f42c1';
  // Beyond this many distribution transformers the map loads them for the view
  // only, from this zoom on: 60,000 markers at city scale are unreadable anyway
  // and would make every pan redraw them all.
  const ALL_TRANSFORMERS_UP_TO = 5000;
  const TRANSFORMERS_FROM_ZOOM = 14;
  const REFRESH_MS = 60000;

  const $ = (id) => document.getElementById(id);
  const status = $('status');
  const panel = $('panel');
  const panelBody = $('panel-body');

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY),
    overview: null,
    feeders: [],
    substations: [],
    transformers: [],
    transformersLoadedFor: null,
    dataTo: null,
    selected: null,
    trying: false,
    minHeadroomKw: 0,
    // What the colours show: `load` headroom or `generation` open capacity.
    view: 'load',
  };

  // What is drawn, for the browser test and anyone curious in the console.
  const exposed = {
    drawn: { feeders: 0, substations: 0, transformers: 0, ties: 0 },
    // Per layer, how many assets are drawn in each colour.
    colours: { feeders: {}, substations: {}, transformers: {} },
    renderedMs: null,
    map: null,
    // A point on a feeder, away from its nodes (the middle of its longest piece),
    // in pixels of the map's container, where a click selects that feeder.
    pointOnFeeder(id) {
      const line = index.feeders.get(id);
      if (!line) return null;
      let best = null;
      let bestLength = -1;
      for (const part of line.getLatLngs()) {
        for (let i = 1; i < part.length; i++) {
          const a = map.latLngToContainerPoint(part[i - 1]);
          const b = map.latLngToContainerPoint(part[i]);
          const length = a.distanceTo(b);
          if (length > bestLength) {
            bestLength = length;
            best = L.point((a.x + b.x) / 2, (a.y + b.y) / 2);
          }
        }
      }
      return best && { x: best.x, y: best.y };
    },
  };
  window.headroomMap = exposed;

  // ---- talking to the service ------------------------------------------------

  class ApiError extends Error {
    constructor(status, message, field) {
      super(message);
      this.status = status;
      this.field = field;
    }
  }

  const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function api(path, options = {}) {
    const headers = { Authorization: `Bearer ${state.token}`, ...(options.headers || {}) };
    let response = await fetch(path, { ...options, headers });
    // The first figures after start or new readings take the service a while
    // on a big network; it answers 503 when a request outlasts its timeout.
    for (let attempt = 1; response.status === 503 && attempt <= 20; attempt++) {
      say('The service is still computing the figures…');
      await pause(2000);
      response = await fetch(path, { ...options, headers });
    }
    const text = await response.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = null;
    }
    if (!response.ok) {
      const error = body && body.error ? body.error : {};
      if (response.status === 401) signIn('That token was not accepted; enter another.');
      throw new ApiError(response.status, error.message || `${response.status} ${response.statusText}`, error.field);
    }
    return body;
  }

  function say(message, isError = false) {
    status.textContent = message;
    status.classList.toggle('error', isError);
  }

  // ---- formatting ----------------------------------------------------------------

  const esc = (value) =>
    String(value).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

  function number(value, digits = 1) {
    if (value === null || value === undefined || !Number.isFinite(value)) return '–';
    return value.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits });
  }

  function age(seconds) {
    if (seconds === null || seconds === undefined) return 'no readings';
    // The browser's clock can run behind the service's; an age is never negative.
    if (seconds < 1) return 'just now';
    if (seconds < 90) return `${Math.round(seconds)} s ago`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
    return `${Math.round(seconds / 86400)} days ago`;
  }

  const UNITS = { p_kw: 'kW', q_kvar: 'kvar', s_kva: 'kVA', i_a: 'A', u_kv: 'kV' };

  // The published grades of open capacity for generation, in the map's colours.
  const GRADE_BANDS = { green: 'green', yellow: 'amber', red: 'red' };

  function band(p) {
    const o = state.overview;
    if (p.data_age_s === null || p.data_age_s === undefined || p.data_age_s > o.stale_after_s) return 'grey';
    if (state.view === 'generation') return GRADE_BANDS[p.grade] || 'grey';
    // N-1 is a feeder's figure: whether a neighbour takes it when its head fails.
    if (state.view === 'n1') {
      if (p.n1_ok === true) return p.n1_headroom_kw > 0 ? 'green' : 'amber';
      if (p.n1_ok === false) return 'red';
      return 'grey';
    }
    if (p.headroom_kw <= 0 || p.loading_pct >= o.red_loading_pct) return 'red';
    if (p.loading_pct >= o.amber_loading_pct) return 'amber';
    return 'green';
  }

  // ---- the view in the URL -------------------------------------------------------

  const LAYER_NAMES = ['feeders', 'transformers', 'substations', 'ties'];
  // What the colours can show: load headroom, generation open capacity, N-1.
  const VIEWS = ['load', 'generation', 'n1'];

  function readView() {
    const p = new URLSearchParams(location.hash.slice(1));
    const num = (key) => (p.has(key) && Number.isFinite(Number(p.get(key))) ? Number(p.get(key)) : null);
    return {
      zoom: num('z'),
      lat: num('lat'),
      lon: num('lon'),
      layers: p.has('layers') ? p.get('layers').split(',').filter((l) => LAYER_NAMES.includes(l)) : LAYER_NAMES,
      minHeadroomKw: num('min') || 0,
      asset: p.get('asset'),
      view: VIEWS.includes(p.get('view')) ? p.get('view') : 'load',
    };
  }

  function writeView() {
    if (!state.overview) return;
    const p = new URLSearchParams();
    const centre = map.getCenter();
    p.set('z', String(map.getZoom()));
    p.set('lat', centre.lat.toFixed(5));
    p.set('lon', centre.lng.toFixed(5));
    p.set('layers', LAYER_NAMES.filter((name) => map.hasLayer(layers[name])).join(','));
    if (state.minHeadroomKw > 0) p.set('min', String(state.minHeadroomKw));
    if (state.view !== 'load') p.set('view', state.view);
    if (state.selected) p.set('asset', state.selected);
    history.replaceState(null, '', `#${p.toString()}`);
  }

  // ---- the map -------------------------------------------------------------------

  const map = L.map('map', { preferCanvas: true, zoomSnap: 0.5 });
  exposed.map = map;
  // One canvas for everything; a little tolerance so thin lines can be clicked.
  const renderer = L.canvas({ padding: 0.3, tolerance: 5 });
  const layers = {
    feeders: L.layerGroup(),
    transformers: L.layerGroup(),
    substations: L.layerGroup(),
    ties: L.layerGroup(),
  };
  const tryLayer = L.layerGroup().addTo(map);
  const index = { feeders: new Map(), substations: new Map(), transformers: new Map() };

  L.control
    .layers(
      null,
      {
        Feeders: layers.feeders,
        'Distribution transformers': layers.transformers,
        Substations: layers.substations,
        'Tie switches': layers.ties,
      },
      { collapsed: false },
    )
    .addTo(map);

  const legend = L.control({ position: 'bottomright' });
  legend.onAdd = () => {
    const div = L.DomUtil.create('div', 'legend');
    div.id = 'legend';
    return div;
  };
  legend.addTo(map);

  function drawLegend() {
    const o = state.overview;
    const many = o.transformers > ALL_TRANSFORMERS_UP_TO;
    if (state.view === 'generation') {
      $('legend').innerHTML = `
      <div class="title">Open capacity for generation (PV)</div>
      <div><i style="background:${COLOURS.green}"></i>green: room left after the queue (C2 &gt; 0)</div>
      <div><i style="background:${COLOURS.amber}"></i>yellow: room today, all of it queued (C2 &le; 0 &lt; C1)</div>
      <div><i style="background:${COLOURS.red}"></i>red: no room (C1 &le; 0), or under a red asset</div>
      <div><i style="background:${COLOURS.grey}"></i>no readings, or older than ${age(o.stale_after_s).replace(' ago', '')}</div>
      <div><i class="tie"></i>tie switch (normally open)</div>
      <div><i class="dot"></i>substation, transformer (size: rating)</div>
      ${many ? `<div class="note">Transformers appear from zoom ${TRANSFORMERS_FROM_ZOOM}.</div>` : ''}`;
      return;
    }
    if (state.view === 'n1') {
      $('legend').innerHTML = `
      <div class="title">N-1: when a feeder's head fails</div>
      <div><i style="background:${COLOURS.green}"></i>a neighbour takes it over a tie, with room to spare</div>
      <div><i style="background:${COLOURS.amber}"></i>a neighbour takes it as it stands, no more</div>
      <div><i style="background:${COLOURS.red}"></i>no tie, or no case carries it: fails N-1</div>
      <div><i style="background:${COLOURS.grey}"></i>not a feeder, N-1 off, or no recent readings</div>
      <div><i class="tie"></i>tie switch (normally open)</div>`;
      return;
    }
    $('legend').innerHTML = `
      <div><i style="background:${COLOURS.green}"></i>loading below ${number(o.amber_loading_pct, 0)}%</div>
      <div><i style="background:${COLOURS.amber}"></i>${number(o.amber_loading_pct, 0)}% to ${number(o.red_loading_pct, 0)}%</div>
      <div><i style="background:${COLOURS.red}"></i>above ${number(o.red_loading_pct, 0)}% or no headroom</div>
      <div><i style="background:${COLOURS.grey}"></i>no readings, or older than ${age(o.stale_after_s).replace(' ago', '')}</div>
      <div><i class="tie"></i>tie switch (normally open)</div>
      <div><i class="dot"></i>substation, transformer (size: rating)</div>
      ${many ? `<div class="note">Transformers appear from zoom ${TRANSFORMERS_FROM_ZOOM}.</div>` : ''}`;
  }

  function tooltip(p) {
    const n1 =
      p.n1_ok === undefined
        ? 'N-1 not worked out'
        : `N-1 ${p.n1_ok ? 'passes' : 'fails'}${p.n1_case ? ` (${esc(p.n1_case)})` : ''}, ${number(p.n1_headroom_kw, 0)} kW more`;
    const figures =
      state.view === 'n1'
        ? n1
        : state.view === 'generation'
        ? `generation ${esc(p.grade)}: C1 ${number(p.generation_headroom_kw, 0)} kW, open C2 ${number(p.generation_open_kw, 0)} kW`
        : `loading ${number(p.loading_pct)}%, headroom ${number(p.headroom_kw, 0)} kW
      (<span class="binding">${esc(p.binding_constraint)}</span>)`;
    return `<b>${esc(p.id)}</b>${p.name ? ` ${esc(p.name)}` : ''}<br>${figures}<br>${age(p.data_age_s)}`;
  }

  function onAssetClick(event, id) {
    if (state.trying) return; // the map's own click places the customer
    L.DomEvent.stopPropagation(event);
    select(id);
  }

  function countColour(kind, colour) {
    exposed.colours[kind][colour] = (exposed.colours[kind][colour] || 0) + 1;
  }

  function drawFeeders() {
    layers.feeders.clearLayers();
    index.feeders.clear();
    exposed.colours.feeders = {};
    let drawn = 0;
    for (const feature of state.feeders) {
      const p = feature.properties;
      if (state.minHeadroomKw > 0 && !(p.headroom_kw > state.minHeadroomKw)) continue;
      const latlngs = feature.geometry.coordinates.map((part) => part.map(([lon, lat]) => [lat, lon]));
      countColour('feeders', band(p));
      const line = L.polyline(latlngs, {
        renderer,
        color: COLOURS[band(p)],
        weight: p.id === state.selected ? 6 : 3,
        opacity: 0.9,
      });
      line.bindTooltip(() => tooltip(p), { sticky: true });
      line.on('click', (e) => onAssetClick(e, p.id));
      layers.feeders.addLayer(line);
      index.feeders.set(p.id, line);
      drawn++;
    }
    exposed.drawn.feeders = drawn;
  }

  function marker(feature, radius, group, kind) {
    const p = feature.properties;
    countColour(kind, band(p));
    const [lon, lat] = feature.geometry.coordinates;
    const circle = L.circleMarker([lat, lon], {
      renderer,
      radius,
      color: '#222',
      weight: p.id === state.selected ? 3 : 1,
      fillColor: COLOURS[band(p)],
      fillOpacity: 0.9,
    });
    circle.bindTooltip(() => tooltip(p));
    circle.on('click', (e) => onAssetClick(e, p.id));
    group.addLayer(circle);
    index[kind].set(p.id, circle);
  }

  // Circles sized by rating: substations (firm kVA) larger than transformers.
  const MARKER_RADIUS = {
    substations: (rated) => Math.min(16, 6 + Math.sqrt(rated / 1000)),
    transformers: (rated) => Math.min(8, 2 + Math.sqrt(rated / 100)),
  };

  function drawMarkers(kind) {
    layers[kind].clearLayers();
    index[kind].clear();
    exposed.colours[kind] = {};
    for (const feature of state[kind]) {
      const radius = MARKER_RADIUS[kind](Math.max(feature.properties.rated, 0));
      marker(feature, radius, layers[kind], kind);
    }
    exposed.drawn[kind] = state[kind].length;
  }

  function drawTies() {
    layers.ties.clearLayers();
    const ties = state.overview.ties.features;
    for (const tie of ties) {
      const latlngs = tie.geometry.coordinates.map(([lon, lat]) => [lat, lon]);
      const line = L.polyline(latlngs, { renderer, color: TIE_COLOUR, weight: 3, dashArray: '4 4' });
      const p = tie.properties;
      line.bindTooltip(`tie switch <b>${esc(p.id)}</b>${p.feeders.length ? ` between ${p.feeders.map(esc).join(' and ')}` : ''}`);
      line.on('click', (e) => onAssetClick(e, p.id));
      layers.ties.addLayer(line);
      // A tie whose two ends share a place still shows where it is.
      if (latlngs.length === 2 && latlngs[0][0] === latlngs[1][0] && latlngs[0][1] === latlngs[1][1]) {
        layers.ties.addLayer(L.circleMarker(latlngs[0], { renderer, radius: 4, color: TIE_COLOUR, weight: 2, fill: false }));
      }
    }
    exposed.drawn.ties = ties.length;
  }

  function showDataAge() {
    if (!state.dataTo) return;
    const to = new Date(state.dataTo);
    const seconds = (Date.now() - to.getTime()) / 1000;
    const el = $('data-age');
    el.textContent = `Readings to ${to.toISOString().slice(0, 16).replace('T', ' ')} UTC (${age(seconds)})`;
    el.classList.toggle('stale', seconds > state.overview.stale_after_s);
  }

  function fillSearchList() {
    const list = $('search-list');
    const options = [];
    for (const f of [...state.substations, ...state.feeders]) {
      const p = f.properties;
      options.push(`<option value="${esc(p.id)}">${p.name ? esc(p.name) : ''}</option>`);
    }
    list.innerHTML = options.join('');
  }

  const manyTransformers = () => state.overview.transformers > ALL_TRANSFORMERS_UP_TO;

  async function loadTransformers() {
    if (!map.hasLayer(layers.transformers)) return;
    let query = 'level=transformer';
    if (manyTransformers()) {
      if (map.getZoom() < TRANSFORMERS_FROM_ZOOM) {
        state.transformers = [];
        state.transformersLoadedFor = null;
        drawMarkers('transformers');
        return;
      }
      const b = map.getBounds().pad(0.25);
      const box = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map((v) => v.toFixed(5)).join(',');
      if (state.transformersLoadedFor === box) return;
      state.transformersLoadedFor = box;
      query += `&bbox=${box}`;
    }
    const collection = await api(`/v1/capacity?${query}`);
    state.transformers = collection.features;
    drawMarkers('transformers');
  }

  async function loadCapacity() {
    const [feeders, substations] = await Promise.all([
      api('/v1/capacity?level=feeder'),
      api('/v1/capacity?level=substation'),
    ]);
    state.feeders = feeders.features;
    state.substations = substations.features;
    state.dataTo = feeders.data_to;
    drawFeeders();
    drawMarkers('substations');
    showDataAge();
  }

  const nextFrame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));

  async function start() {
    say('Loading the network…');
    state.overview = await api('/v1/map');
    const view = readView();
    state.minHeadroomKw = view.minHeadroomKw;
    if (state.minHeadroomKw > 0) $('min-headroom').value = String(state.minHeadroomKw);
    state.view = view.view;
    $('view').value = state.view;
    for (const name of view.layers) layers[name].addTo(map);
    const bbox = state.overview.bbox;
    if (view.zoom !== null && view.lat !== null && view.lon !== null) {
      map.setView([view.lat, view.lon], view.zoom);
    } else if (bbox) {
      map.fitBounds([[bbox[1], bbox[0]], [bbox[3], bbox[2]]], { padding: [20, 20] });
    } else {
      map.setView([0, 0], 2);
    }
    drawLegend();
    drawTies();
    await Promise.all([loadCapacity(), loadTransformers()]);
    fillSearchList();
    // The canvas draws on the next animation frame; the second one follows it.
    await nextFrame();
    await nextFrame();
    exposed.renderedMs = performance.now();
    document.body.dataset.state = 'ready';
    say(`${state.overview.feeders} feeders, ${state.overview.substations} substations, ${state.overview.transformers} transformers`);
    map.on('moveend', () => {
      writeView();
      loadTransformers().catch((e) => say(e.message, true));
    });
    map.on('overlayadd overlayremove', () => {
      writeView();
      loadTransformers().catch((e) => say(e.message, true));
    });
    if (view.asset) select(view.asset);
    writeView();
    setInterval(() => {
      if (document.visibilityState !== 'visible') return;
      loadCapacity()
        .then(() => {
          state.transformersLoadedFor = null;
          return loadTransformers();
        })
        .catch((e) => say(e.message, true));
    }, REFRESH_MS);
    setInterval(showDataAge, 30000);
  }

  // ---- the asset panel ---------------------------------------------------------

  function highlight(id) {
    for (const [key, line] of index.feeders) line.setStyle({ weight: key === id ? 6 : 3 });
    for (const kind of ['substations', 'transformers']) {
      for (const [key, circle] of index[kind]) circle.setStyle({ weight: key === id ? 3 : 1 });
    }
  }

  function row(label, value, field, unit = '') {
    const attribute = field ? ` data-field="${esc(field)}"` : '';
    return `<tr><th>${esc(label)}</th><td${attribute}>${value}${unit ? ` ${esc(unit)}` : ''}</td></tr>`;
  }

  function showPanel(html) {
    panel.hidden = false;
    panelBody.innerHTML = html;
    map.invalidateSize();
  }

  function closePanel() {
    panel.hidden = true;
    state.selected = null;
    highlight(null);
    writeView();
    map.invalidateSize();
  }

  function fitTo(bbox) {
    const [w, s, e, n] = bbox;
    if (w === e && s === n) map.setView([s, w], Math.max(map.getZoom(), 16));
    else map.fitBounds([[s, w], [n, e]], { padding: [40, 40], maxZoom: 17 });
  }

  let chart = null;

  async function select(id, { zoom = false } = {}) {
    state.selected = id;
    highlight(id);
    writeView();
    showPanel(`<h2>${esc(id)}</h2><p class="note">Loading…</p>`);
    let asset;
    try {
      asset = await api(`/v1/assets/${encodeURIComponent(id)}`);
    } catch (e) {
      showPanel(`<h2>${esc(id)}</h2><p class="error">${esc(e.message)}</p>`);
      return;
    }
    if (state.selected !== id) return;
    if (zoom && asset.bbox) fitTo(asset.bbox);
    const c = asset.capacity;
    const r = asset.readings;
    const ratings = Object.entries(asset.properties)
      .filter(([, v]) => v !== null && v !== undefined && typeof v !== 'object')
      .map(([k, v]) => row(k.replace(/_/g, ' '), esc(typeof v === 'number' ? number(v, Number.isInteger(v) ? 0 : 2) : v), `property.${k}`))
      .join('');
    const topology = Object.entries(asset.topology)
      .filter(([, v]) => v !== null && v !== undefined && !Array.isArray(v))
      .map(([k, v]) => row(k.replace(/_/g, ' '), esc(typeof v === 'number' ? number(v, 0) : v), `topology.${k}`))
      .join('');
    let html = `<h2 data-field="id">${esc(asset.kind)} ${esc(asset.id)}${asset.name ? ` · ${esc(asset.name)}` : ''}</h2>`;
    if (c) {
      html += `<h3>Capacity</h3><table class="figures">
        ${row('Headroom', number(c.headroom_kw), 'headroom_kw', 'kW')}
        ${row('Binding constraint', `<span class="binding">${esc(c.binding_constraint)}</span>`, 'binding_constraint')}
        ${c.worst_node_headroom_kw !== undefined ? row(`Headroom at worst node ${c.worst_node || ''}`, number(c.worst_node_headroom_kw), 'worst_node_headroom_kw', 'kW') : ''}
        ${row('Loading at peak', number(c.loading_pct), 'loading_pct', '%')}
        ${row('Rating', number(c.rated, 0), 'rated', asset.kind === 'feeder' ? 'A' : 'kVA')}
        ${row('Peak', number(c.peak_kva), 'peak_kva', 'kVA')}
        ${row('95th percentile', number(c.p95_kva), 'p95_kva', 'kVA')}
        ${row('Reserved for applications', number(asset.reserved_kw), 'reserved_kw', 'kW')}
        ${row('Measured share of load', number(c.metered_share * 100, 0), 'metered_share', '%')}
        ${row('Data age', esc(age(c.data_age_s)), 'data_age_s')}
      </table>
      <h3>Open capacity for generation</h3><table class="figures">
        ${row('Grade', `<span class="grade grade-${esc(c.grade)}">${esc(c.grade)}</span>`, 'grade')}
        ${row('PV that fits today (C1)', number(c.generation_headroom_kw, 0), 'generation_headroom_kw', 'kW')}
        ${row('Open after the queue (C2)', number(c.generation_open_kw, 0), 'generation_open_kw', 'kW')}
      </table>`;
      if (c.n1_ok !== undefined) {
        html += `<h3>N-1: the head lost</h3><table class="figures">
        ${row('Restored as it stands', c.n1_ok ? 'yes' : '<span class="binding">no</span>', 'n1_ok')}
        ${row('Headroom with N-1', number(c.n1_headroom_kw, 0), 'n1_headroom_kw', 'kW')}
        ${row('Best case (tie)', esc(c.n1_case || 'none'), 'n1_case')}
        </table>${c.n1_detail ? `<p class="note" data-field="n1_detail">${esc(c.n1_detail)}</p>` : ''}`;
      }
    } else if (asset.reserved_kw > 0) {
      html += `<table class="figures">${row('Reserved for applications', number(asset.reserved_kw), 'reserved_kw', 'kW')}</table>`;
    }
    if (r) {
      const now = Date.now();
      const latest = r.latest
        .map((l) => row(l.quantity, `${number(l.value, 2)} ${esc(UNITS[l.quantity] || '')} <span class="note">${esc(age((now - l.ts_ms) / 1000))}</span>`, `latest.${l.quantity}`))
        .join('');
      html += `<h3>Readings</h3><table class="figures">
        ${latest || row('Latest', 'none')}
        ${row('Peak in window', number(r.peak_kva), 'readings.peak_kva', 'kVA')}
        ${row('95th percentile', number(r.p95_kva), 'readings.p95_kva', 'kVA')}
        ${row('Coverage', number(r.coverage * 100, 0), 'readings.coverage', '%')}
      </table>
      <h3>Typical day (kW, UTC)</h3><div id="typical-day"></div>`;
    }
    html += `<h3>Ratings</h3><table class="figures">${ratings}</table>`;
    if (topology) html += `<h3>Where</h3><table class="figures">${topology}</table>`;
    showPanel(html);
    if (r) drawTypicalDay(r);
  }

  function drawTypicalDay(readings) {
    if (chart) {
      chart.destroy();
      chart = null;
    }
    const hours = readings.typical_weekday_kw.map((_, i) => i / 4);
    const target = $('typical-day');
    if (!target) return;
    chart = new uPlot(
      {
        width: Math.max(240, panelBody.clientWidth - 4),
        height: 180,
        scales: { x: { time: false } },
        axes: [{ label: 'hour' }, { label: 'kW', size: 60 }],
        series: [
          { label: 'hour' },
          { label: 'weekday', stroke: '#0969da', width: 2, spanGaps: true },
          { label: 'weekend', stroke: '#bf8700', width: 2, dash: [6, 4], spanGaps: true },
        ],
      },
      [hours, readings.typical_weekday_kw, readings.typical_weekend_kw],
      target,
    );
  }

  // ---- try a connection ----------------------------------------------------------

  function setTrying(on) {
    state.trying = on;
    $('try').setAttribute('aria-pressed', String(on));
    $('map').classList.toggle('trying', on);
    if (on) say('Click the map where the customer is.');
  }

  function tryForm(latlng) {
    say('');
    tryLayer.clearLayers();
    L.circleMarker(latlng, { renderer, radius: 7, color: '#000', weight: 2, fillColor: '#fff', fillOpacity: 1 }).addTo(tryLayer);
    state.selected = null;
    highlight(null);
    showPanel(`<h2>Try a connection</h2>
      <p class="note">At ${latlng.lat.toFixed(5)}, ${latlng.lng.toFixed(5)}</p>
      <form class="try" id="try-form">
        <label>Connect <select name="kind">
          <option value="load">a load</option>
          <option value="generation">a generator</option>
        </select></label>
        <label>Source <select name="source">
          <option value="pv">PV</option><option value="wind">wind</option>
          <option value="storage">storage</option><option value="other">other</option>
        </select></label>
        <label>Demand (export for a generator), kW <input name="demand_kw" type="number" min="0.1" step="any" value="500" required></label>
        <label>Power factor <input name="power_factor" type="number" min="0.05" max="1" step="0.01" value="0.9" required></label>
        <label>Voltage <select name="voltage_kv">
          <option value="">decide from demand</option>
          <option value="0.4">0.4 kV</option><option value="10">10 kV</option><option value="20">20 kV</option>
        </select></label>
        <label>Importance <select name="importance">
          <option value="normal">normal</option>
          <option value="important">important (two circuits)</option>
          <option value="critical">critical (two sources)</option>
        </select></label>
        <label>Search radius, m <input name="max_distance_m" type="number" min="1" step="any" placeholder="default"></label>
        <button type="submit">Find supply schemes</button>
      </form>
      <div id="try-result"></div>`);
    // A generator takes no second supply, and exports at unity unless asked.
    const form = $('try-form');
    const kindChanged = () => {
      const generation = form.elements.kind.value === 'generation';
      form.elements.source.closest('label').hidden = !generation;
      form.elements.importance.closest('label').hidden = generation;
      form.elements.power_factor.value = generation ? '1' : '0.9';
    };
    form.elements.kind.addEventListener('change', kindChanged);
    kindChanged();
    $('try-form').addEventListener('submit', (event) => {
      event.preventDefault();
      runTry(latlng, new FormData(event.target)).catch((e) => {
        $('try-result').innerHTML = `<p class="error">${esc(e.status === 403 ? 'Trying a connection needs a planner token.' : e.message)}${e.field ? ` (${esc(e.field)})` : ''}</p>`;
      });
    });
  }

  async function runTry(latlng, form) {
    const application = {
      id: `map-${Date.now()}`,
      lon: latlng.lng,
      lat: latlng.lat,
      demand_kw: Number(form.get('demand_kw')),
      power_factor: Number(form.get('power_factor')),
      customer_class: 'other',
    };
    if (form.get('kind') === 'generation') {
      application.kind = 'generation';
      application.source = form.get('source');
    } else {
      application.importance = form.get('importance');
    }
    if (form.get('voltage_kv')) application.voltage_kv = Number(form.get('voltage_kv'));
    if (form.get('max_distance_m')) application.max_distance_m = Number(form.get('max_distance_m'));
    $('try-result').innerHTML = '<p class="note">Ranking…</p>';
    const ranking = await api('/v1/schemes', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(application),
    });
    showRanking(latlng, ranking);
  }

  function showRanking(latlng, ranking) {
    tryLayer.eachLayer((layer) => {
      if (layer instanceof L.Polyline) tryLayer.removeLayer(layer);
    });
    const rankOf = new Map();
    const lineOf = new Map();
    for (const scheme of [...ranking.schemes].reverse()) {
      for (const supply of scheme.supplies) rankOf.set(supply, scheme.rank);
      for (const line of scheme.service_lines || []) lineOf.set(line.supply, line);
    }
    for (const c of ranking.candidates) {
      const rank = rankOf.get(c.node);
      const line = L.polyline([latlng, [c.lat, c.lon]], {
        renderer,
        color: c.feasible ? (rank === 1 ? '#0969da' : COLOURS.green) : COLOURS.grey,
        weight: rank === 1 ? 4 : 2,
        dashArray: c.feasible ? null : '3 5',
      });
      const service = lineOf.get(c.node);
      const built = service && service.conductor ? `, ${esc(service.conductor.name)}, cost ${number(service.cost, 0)}` : '';
      line.bindTooltip(
        c.feasible
          ? `${rank ? `scheme ${rank}: ` : ''}${esc(c.node)}, headroom ${number(c.headroom_kw, 0)} kW${rank ? built : ''}`
          : `${esc(c.node)}: ${esc(c.binding_constraint)}`,
        { permanent: rank === 1, direction: 'right' },
      );
      tryLayer.addLayer(line);
    }
    // A scheme's new line: its estimated route, the conductor the catalogue
    // gives it and what it costs, or why no conductor fits.
    const serviceLine = (l) =>
      l.conductor
        ? `<div class="service-line" data-conductor="${esc(l.conductor.name)}">${esc(l.supply)}: about
            ${number(l.route_length_m, 0)} m (estimated route) of <b>${esc(l.conductor.name)}</b>,
            ${number(l.conductor.loading_pct, 0)}% loaded, terminal ${number(l.conductor.terminal_min_voltage_pu, 3)} pu,
            cost ${number(l.cost, 0)}</div>`
        : `<div class="service-line error">${esc(l.supply)}: about ${number(l.route_length_m, 0)} m,
            ${esc(l.problem || 'no conductor fits')}</div>`;
    const parts = (p) =>
      ['distance', 'cost', 'loading', 'voltage', 'headroom'].map((k) => `${k} ${number(p[k], 2)}`).join(' · ');
    const schemes = ranking.schemes
      .map(
        (s) => `<li data-rank="${s.rank}" data-supplies="${esc(s.supplies.join(','))}" title="${esc(s.summary)}">
          <b>${s.supplies.map(esc).join(' + ')}</b> (score ${number(s.score, 2)}${
            s.cost !== undefined && s.cost !== null ? `, estimated cost <span class="cost">${number(s.cost, 0)}</span>` : ''
          })
          ${(s.service_lines || []).map(serviceLine).join('')}
          ${s.score_parts ? `<div class="parts">${parts(s.score_parts)}</div>` : ''}</li>`,
      )
      .join('');
    let html = `<h3>Schemes</h3>`;
    if (schemes) {
      html += `<ol class="schemes" id="schemes">${schemes}</ol>`;
    } else {
      const why = ranking.explanation || {};
      html += `<p class="error" id="no-scheme">No scheme: ${esc(why.reason || 'no candidate fits')}</p>`;
      if (why.reinforce_feeder) html += `<p>Reinforcing feeder <b>${esc(why.reinforce_feeder)}</b> would make room.</p>`;
    }
    const rows = ranking.candidates
      .map(
        (c) => `<tr class="${c.feasible ? 'feasible' : 'infeasible'}" data-node="${esc(c.node)}">
          <td>${esc(c.node)}</td><td>${esc(c.node_type)}</td><td>${esc(c.feeder || '')}</td>
          <td class="number">${number(c.distance_m, 0)}</td><td class="number">${number(c.headroom_kw, 0)}</td>
          <td>${c.feasible ? 'fits' : `<span class="binding">${esc(c.binding_constraint)}</span>`}</td></tr>`,
      )
      .join('');
    html += `<h3>Candidates (${ranking.candidates.length})</h3>
      <table class="candidates"><thead><tr><th>node</th><th>type</th><th>feeder</th><th>m</th><th>headroom kW</th><th></th></tr></thead>
      <tbody>${rows}</tbody></table>
      <p class="note">Figures from readings ${esc(ranking.data.from)} to ${esc(ranking.data.to)}, ${number(ranking.data.metered_share * 100, 0)}% measured.</p>`;
    $('try-result').innerHTML = html;
  }

  // ---- search and filter ---------------------------------------------------------

  async function search(text) {
    const query = text.trim();
    if (!query) return;
    const lower = query.toLowerCase();
    const all = [...state.substations, ...state.feeders, ...state.transformers];
    const hit =
      all.find((f) => f.properties.id.toLowerCase() === lower) ||
      all.find((f) => (f.properties.name || '').toLowerCase().includes(lower));
    const id = hit ? hit.properties.id : query;
    try {
      await select(id, { zoom: true });
      say('');
    } catch (e) {
      say(e.message, true);
    }
  }

  // ---- signing in ----------------------------------------------------------------

  let started = false;

  function signIn(message = '') {
    $('sign-in-error').textContent = message;
    const dialog = $('sign-in');
    if (!dialog.open) dialog.showModal();
  }

  $('sign-in-form').addEventListener('submit', (event) => {
    event.preventDefault();
    state.token = $('token').value.trim();
    sessionStorage.setItem(TOKEN_KEY, state.token);
    $('sign-in').close();
    boot();
  });

  $('sign-out').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });

  $('panel-close').addEventListener('click', closePanel);
  $('try').addEventListener('click', () => setTrying(!state.trying));
  $('search').addEventListener('submit', (event) => {
    event.preventDefault();
    search($('search-text').value);
  });
  $('view').addEventListener('change', (event) => {
    state.view = VIEWS.includes(event.target.value) ? event.target.value : 'load';
    if (state.overview) {
      drawLegend();
      drawFeeders();
      drawMarkers('substations');
      drawMarkers('transformers');
    }
    writeView();
  });
  $('min-headroom').addEventListener('change', (event) => {
    state.minHeadroomKw = Math.max(0, Number(event.target.value) || 0);
    if (state.overview) drawFeeders();
    writeView();
  });
  map.on('click', (event) => {
    if (!state.trying) return;
    setTrying(false);
    tryForm(event.latlng);
  });

  function boot() {
    if (!state.token) {
      signIn();
      return;
    }
    if (started) return;
    started = true;
    start().catch((e) => {
      started = false;
      say(e.message, true);
    });
  }

  boot();
})();
