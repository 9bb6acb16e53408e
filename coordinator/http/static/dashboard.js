// Quartet dashboard: renders the JSON API of the coordinator (or the data inlined by
// `quartetctl report html`) with plain DOM and inline SVG. No library, no network fetch other
// than the coordinator's own /api paths.
(function () {
  'use strict';

  var POLL_MS = 2000;
  var SVG_NS = 'http://www.w3.org/2000/svg';
  // Candidate states as the JSON API names them (stoppedEarly: multi-fidelity campaigns).
  var STATES = ['pending', 'leased', 'succeeded', 'failed', 'cancelled', 'stoppedEarly'];
  var STATE_COLORS = {
    pending: '#b8c2d6', leased: '#f2b84b', succeeded: '#2e9e6a', failed: '#d64545',
    cancelled: '#8a8f99', stoppedEarly: '#7a9cc6'
  };
  var STATIC_DATA = window.QUARTET_DATA || null;
  var params = new URLSearchParams(window.location.search);
  var token = params.get('token');

  // ---- Errors are shown on the page (and read by the tests) ------------------------------------

  function showError(message) {
    var box = document.getElementById('errors');
    if (!box) return;
    var line = document.createElement('div');
    line.textContent = message;
    box.appendChild(line);
  }
  function clearErrors() {
    var box = document.getElementById('errors');
    if (box) box.textContent = '';
  }
  window.addEventListener('error', function (ev) { showError('script error: ' + ev.message); });
  window.addEventListener('unhandledrejection', function (ev) {
    showError('script error: ' + (ev.reason && ev.reason.message ? ev.reason.message : ev.reason));
  });

  // ---- Helpers ----------------------------------------------------------------------------------

  function api(path) {
    var headers = {};
    if (token) headers.Authorization = 'Bearer ' + token;
    return fetch(path, { headers: headers, cache: 'no-store' }).then(function (r) {
      return r.json().catch(function () { return null; }).then(function (body) {
        if (!r.ok) {
          throw new Error((body && body.message) || ('HTTP ' + r.status + ' for ' + path));
        }
        return body;
      });
    });
  }
  function href(path) { return token ? path + '?token=' + encodeURIComponent(token) : path; }
  function num(v) { return v === undefined || v === null || v === '' ? 0 : Number(v); }
  // Thousands separated by commas (toLocaleString costs tens of ms on its first call).
  function fmtInt(v) { return String(Math.round(num(v))).replace(/\B(?=(\d{3})+(?!\d))/g, ','); }
  function fmtAcc(v) { return num(v) > 0 ? num(v).toFixed(4) : '–'; }
  function fmtTime(ms) {
    return num(ms) > 0 ? new Date(num(ms)).toISOString().replace('T', ' ').slice(0, 19) : '–';
  }
  function fmtDuration(s) {
    s = num(s);
    if (s <= 0) return '–';
    if (s < 90) return s.toFixed(0) + ' s';
    if (s < 5400) return (s / 60).toFixed(0) + ' min';
    return (s / 3600).toFixed(1) + ' h';
  }
  function shortEnum(v, prefix) { return String(v || '').replace(prefix, ''); }
  function setText(id, text) {
    var e = document.getElementById(id);
    if (e) e.textContent = text;
  }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function svgEl(tag, attrs, text) {
    var e = document.createElementNS(SVG_NS, tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function row(cells, header) {
    var tr = document.createElement('tr');
    cells.forEach(function (c) {
      var td = document.createElement(header ? 'th' : 'td');
      if (c instanceof Node) td.appendChild(c); else td.textContent = c;
      tr.appendChild(td);
    });
    return tr;
  }
  function fillTable(id, head, rows) {
    var t = document.getElementById(id);
    if (!t) return;
    if (head) {
      var thead = t.querySelector('thead');
      clear(thead);
      thead.appendChild(row(head, true));
    }
    var tbody = t.querySelector('tbody');
    clear(tbody);
    rows.forEach(function (r) { tbody.appendChild(row(r)); });
  }
  function candidateLink(id) {
    if (STATIC_DATA) return document.createTextNode(String(id));
    var a = el('a', { href: href('/candidates/' + id) }, String(id));
    return a;
  }
  function niceRange(lo, hi) {
    if (!(hi > lo)) { hi = lo + 1; }
    return [lo, hi];
  }

  // ---- Charts (inline SVG) ----------------------------------------------------------------------

  // series: [{color, points: [[x, y], ...]}]; opts: {time, yFormat, yMin, yMax}
  function lineChart(svg, series, opts) {
    clear(svg);
    var W = num(svg.getAttribute('width')), H = num(svg.getAttribute('height'));
    var L = 56, R = 12, T = 10, B = 28;
    var xs = [], ys = [];
    series.forEach(function (s) {
      s.points.forEach(function (p) { xs.push(p[0]); ys.push(p[1]); });
    });
    if (xs.length === 0) {
      svg.appendChild(svgEl('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'no data yet'));
      return;
    }
    var xr = niceRange(Math.min.apply(null, xs), Math.max.apply(null, xs));
    var yr = niceRange(opts.yMin !== undefined ? opts.yMin : Math.min.apply(null, ys),
                       opts.yMax !== undefined ? opts.yMax : Math.max.apply(null, ys));
    function X(v) { return L + (v - xr[0]) / (xr[1] - xr[0]) * (W - L - R); }
    function Y(v) { return H - B - (v - yr[0]) / (yr[1] - yr[0]) * (H - T - B); }
    svg.appendChild(svgEl('line', { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: '#d9dee8' }));
    svg.appendChild(svgEl('line', { x1: L, y1: T, x2: L, y2: H - B, stroke: '#d9dee8' }));
    var yf = opts.yFormat || function (v) { return String(Math.round(v)); };
    for (var i = 0; i <= 4; i++) {
      var yv = yr[0] + (yr[1] - yr[0]) * i / 4;
      svg.appendChild(svgEl('text', { x: L - 6, y: Y(yv) + 4, 'text-anchor': 'end' }, yf(yv)));
      svg.appendChild(svgEl('line', { x1: L, y1: Y(yv), x2: W - R, y2: Y(yv), stroke: '#f0f2f6' }));
    }
    var xf = opts.time ? function (v) { return new Date(v).toISOString().slice(11, 19); }
                       : function (v) { return String(Math.round(v)); };
    [xr[0], (xr[0] + xr[1]) / 2, xr[1]].forEach(function (xv, j) {
      svg.appendChild(svgEl('text', { x: X(xv), y: H - 8,
        'text-anchor': j === 0 ? 'start' : (j === 2 ? 'end' : 'middle') }, xf(xv)));
    });
    series.forEach(function (s) {
      var d = s.points.map(function (p, k) {
        return (k === 0 ? 'M' : 'L') + X(p[0]).toFixed(1) + ',' + Y(p[1]).toFixed(1);
      }).join('');
      svg.appendChild(svgEl('path', { d: d, fill: 'none', stroke: s.color, 'stroke-width': 2,
                                      'class': 'series' }));
      if (s.points.length === 1) {
        var p = s.points[0];
        svg.appendChild(svgEl('circle', { cx: X(p[0]), cy: Y(p[1]), r: 3, fill: s.color }));
      }
    });
  }

  // rows: [{label, values: {state: count}}] as horizontal stacked bars.
  function stackedBars(svg, rows) {
    clear(svg);
    var W = num(svg.getAttribute('width'));
    var L = 120, R = 50, rowH = 16, T = 4;
    var H = T * 2 + rows.length * rowH;
    svg.setAttribute('height', Math.max(H, 40));
    var max = 1;
    rows.forEach(function (r) {
      var t = 0;
      STATES.forEach(function (s) { t += num(r.values[s]); });
      max = Math.max(max, t);
    });
    rows.forEach(function (r, i) {
      var y = T + i * rowH, x = L, total = 0;
      svg.appendChild(svgEl('text', { x: L - 6, y: y + 11, 'text-anchor': 'end' }, r.label));
      STATES.forEach(function (s) {
        var v = num(r.values[s]);
        if (v <= 0) return;
        var w = v / max * (W - L - R);
        var rect = svgEl('rect', { x: x, y: y + 2, width: w, height: rowH - 4,
                                   fill: STATE_COLORS[s], 'class': 'bar' });
        rect.appendChild(svgEl('title', {}, r.label + ': ' + v + ' ' + s));
        svg.appendChild(rect);
        x += w;
        total += v;
      });
      svg.appendChild(svgEl('text', { x: x + 4, y: y + 11 }, String(total)));
    });
  }

  // A matrix heatmap: labels for rows and columns, cell(i, j) -> {value, text} or null.
  function heatmap(svg, rowLabels, colLabels, cell, opts) {
    clear(svg);
    var L = opts.left || 110, T = opts.top || 110;
    var size = opts.cell || Math.max(8, Math.min(18, Math.floor(440 / Math.max(colLabels.length, 1))));
    var W = L + colLabels.length * size + 10, H = T + rowLabels.length * size + 10;
    svg.setAttribute('width', W);
    svg.setAttribute('height', H);
    var lo = Infinity, hi = -Infinity;
    rowLabels.forEach(function (_, i) {
      colLabels.forEach(function (_, j) {
        var c = cell(i, j);
        if (c && isFinite(c.value)) { lo = Math.min(lo, c.value); hi = Math.max(hi, c.value); }
      });
    });
    if (!(hi > lo)) { hi = lo + 1; }
    rowLabels.forEach(function (label, i) {
      svg.appendChild(svgEl('text', { x: L - 4, y: T + i * size + size * 0.75,
                                      'text-anchor': 'end' }, label));
    });
    colLabels.forEach(function (label, j) {
      var x = L + j * size + size * 0.7;
      svg.appendChild(svgEl('text', { x: x, y: T - 4, transform: 'rotate(-60 ' + x + ' ' + (T - 4) + ')' },
                            label));
    });
    var cells = document.createDocumentFragment();
    rowLabels.forEach(function (_, i) {
      colLabels.forEach(function (_, j) {
        var c = cell(i, j);
        if (!c) return;
        var f = (c.value - lo) / (hi - lo);
        var color = c.value > 0 || opts.zeroColored
          ? 'rgb(' + Math.round(235 - 200 * f) + ',' + Math.round(242 - 140 * f) + ',' +
            Math.round(250 - 30 * f) + ')'
          : '#f6f7fb';
        var rect = svgEl('rect', { x: L + j * size, y: T + i * size, width: size - 1,
                                   height: size - 1, fill: color, 'class': 'cell',
                                   'data-value': String(c.value) });
        rect.appendChild(svgEl('title', {}, c.text));
        cells.appendChild(rect);
      });
    });
    svg.appendChild(cells);
  }

  // ---- Campaign list ----------------------------------------------------------------------------

  function renderList(data) {
    var rows = (data.campaigns || []).map(function (c) {
      var cfg = c.config || {};
      return [
        el('a', { href: href('/campaigns/' + c.id), 'class': 'campaign-link' }, String(c.id)),
        cfg.name || '', shortEnum(c.state, 'CAMPAIGN_STATE_'),
        shortEnum(cfg.sampler, 'SAMPLER_KIND_').toLowerCase(),
        fmtInt(c.issued) + ' / ' + fmtInt(cfg.budget),
        fmtInt(c.counts && c.counts.succeeded), fmtInt(c.counts && c.counts.failed),
        fmtAcc(c.bestAccuracy), fmtTime(c.createdUnixMs)
      ];
    });
    fillTable('campaigns', null, rows);
  }

  // ---- Campaign page ----------------------------------------------------------------------------

  function renderSummary(page) {
    var c = page.campaign || {}, cfg = c.config || {}, n = c.counts || {}, cov = page.coverage || {};
    document.title = 'Quartet: ' + (cfg.name || 'campaign ' + c.id);
    setText('c-title', 'Campaign ' + c.id + ': ' + (cfg.name || ''));
    setText('subtitle', shortEnum(cfg.sampler, 'SAMPLER_KIND_').toLowerCase() + ', k = ' + cfg.k +
            ', space ' + fmtInt(c.spaceSize));
    setText('c-state', shortEnum(c.state, 'CAMPAIGN_STATE_'));
    setText('c-issued', fmtInt(c.issued));
    setText('c-budget', fmtInt(cfg.budget));
    setText('c-succeeded', fmtInt(n.succeeded));
    setText('c-failed', fmtInt(n.failed));
    setText('c-running', fmtInt(n.leased));
    setText('c-best', fmtAcc(c.bestAccuracy));
    setText('c-pairs', fmtInt(cov.pairsSeen) + ' / ' + fmtInt(cov.pairsTotal));
    setText('c-anchoring', num(cov.anchoringIndex).toFixed(3));
    setText('c-eta', fmtDuration(c.etaSeconds));
  }

  function renderProgress(page) {
    var pts = (page.progress && page.progress.points) || [];
    var start = num(page.campaign && page.campaign.createdUnixMs);
    function withStart(key) {
      var out = pts.map(function (p) { return [num(p.unixMs), num(p[key])]; });
      if (out.length && start > 0 && start < out[0][0]) out.unshift([start, 0]);
      return out;
    }
    lineChart(document.getElementById('chart-progress'), [
      { color: STATE_COLORS.succeeded, points: withStart('succeeded') },
      { color: STATE_COLORS.failed, points: withStart('failed') }
    ], { time: true, yMin: 0 });
    var best = pts.filter(function (p) { return num(p.bestAccuracy) > 0; })
                  .map(function (p) { return [num(p.unixMs), num(p.bestAccuracy)]; });
    lineChart(document.getElementById('chart-best'), [{ color: '#2f6fde', points: best }],
              { time: true, yFormat: function (v) { return v.toFixed(3); } });
  }

  function renderCoverage(page) {
    var fams = (page.coverage && page.coverage.families) || [];
    stackedBars(document.getElementById('chart-coverage'), fams.map(function (f) {
      return { label: f.family, values: f.counts || {} };
    }));
  }

  function pairIndex(pool, entries, key) {
    var pos = {}, m = {};
    pool.forEach(function (f, i) { pos[f] = i; });
    entries.forEach(function (e) {
      var a = key(e);
      if (pos[a[0]] === undefined || pos[a[1]] === undefined) return;
      m[pos[a[0]] + ',' + pos[a[1]]] = e;
      m[pos[a[1]] + ',' + pos[a[0]]] = e;
    });
    return m;
  }

  function renderPairs(page) {
    var pool = (page.campaign && page.campaign.config && page.campaign.config.pool) || [];
    var counts = pairIndex(pool, (page.coverage && page.coverage.pairs) || [],
                           function (p) { return [p.familyA, p.familyB]; });
    heatmap(document.getElementById('chart-pairs-count'), pool, pool, function (i, j) {
      var p = counts[i + ',' + j];
      if (i === j || !p) return null;
      return { value: num(p.total), text: pool[i] + ' + ' + pool[j] + ': ' + num(p.total) +
               ' candidates (' + num(p.counts && p.counts.succeeded) + ' succeeded)' };
    }, { zeroColored: false });
    var acc = pairIndex(pool, (page.yield && page.yield.pairs) || [],
                        function (e) { return e.families || []; });
    heatmap(document.getElementById('chart-pairs-accuracy'), pool, pool, function (i, j) {
      var e = acc[i + ',' + j];
      if (i === j || !e || num(e.succeeded) === 0) return null;
      return { value: num(e.meanAccuracy), text: pool[i] + ' + ' + pool[j] + ': mean ' +
               num(e.meanAccuracy).toFixed(4) + ' over ' + num(e.succeeded) };
    }, { zeroColored: true });
  }

  function renderHistogram(page) {
    var pr = page.progress || {}, bins = num(pr.bins), lo = num(pr.accuracyLo), hi = num(pr.accuracyHi);
    var fams = pr.families || [];
    setText('hist-range', 'test accuracy ' + lo.toFixed(3) + ' to ' + hi.toFixed(3) + ', ' + bins +
            ' bins');
    var cols = [];
    for (var b = 0; b < bins; b++) cols.push((lo + (hi - lo) * b / bins).toFixed(3));
    heatmap(document.getElementById('chart-histogram'), fams.map(function (f) { return f.family; }),
            cols, function (i, j) {
              var v = num((fams[i].counts || [])[j]);
              return { value: v, text: fams[i].family + ', accuracy from ' + cols[j] + ': ' + v };
            }, { cell: 22, top: 50, zeroColored: false });
  }

  function renderFamilies(page) {
    var fams = (page.yield && page.yield.families) || [];
    var classes = {};
    fams.forEach(function (f) {
      Object.keys(f.failuresByClass || {}).forEach(function (k) { classes[k] = true; });
    });
    var names = Object.keys(classes).sort();
    var head = ['family', 'succeeded', 'failed', 'success rate', 'mean acc', 'median acc',
                'max acc'].concat(names.map(function (k) { return shortEnum(k, 'ERROR_CLASS_'); }));
    fillTable('t-families', head, fams.map(function (f) {
      return [(f.families || [])[0] || '', fmtInt(f.succeeded), fmtInt(f.failed),
              num(f.successRate).toFixed(3), fmtAcc(f.meanAccuracy), fmtAcc(f.medianAccuracy),
              fmtAcc(f.maxAccuracy)].concat(names.map(function (k) {
                return fmtInt((f.failuresByClass || {})[k]);
              }));
    }));
  }

  function renderBest(page) {
    fillTable('t-best', null, (page.best || []).map(function (c) {
      var r = c.result || {};
      return [candidateLink(c.candidateId),
              ((c.combination && c.combination.families) || []).join(' + '),
              (c.axisLevels || []).map(function (a) { return a.value; }).join(', '),
              fmtAcc(r.testAccuracy), num(r.wallSeconds).toFixed(1), c.workerId || ''];
    }));
  }

  function renderAxes(page) {
    var box = document.getElementById('axes-body');
    var cov = (page.coverage && page.coverage.axes) || [];
    var yl = (page.yield && page.yield.axes) || [];
    if (!cov.length) return;
    clear(box);
    box.className = '';
    cov.forEach(function (axis, a) {
      box.appendChild(el('h2', {}, axis.path + (axis.continuous ? ' (continuous)' : '')));
      var yAxis = yl[a] || { levels: [] };
      var t = el('table', { 'class': 'axis-table' });
      t.appendChild(row(['level'].concat(STATES, ['total', 'success rate', 'mean acc']), true));
      (axis.levels || []).forEach(function (lv, i) {
        var y = (yAxis.levels || [])[i] || {};
        var n = lv.counts || {};
        t.appendChild(row([lv.label].concat(STATES.map(function (s) { return fmtInt(n[s]); }),
                          [fmtInt(lv.total), num(y.successRate).toFixed(3), fmtAcc(y.meanAccuracy)])));
      });
      box.appendChild(t);
    });
  }

  function renderCampaign(page) {
    renderSummary(page);
    renderProgress(page);
    renderCoverage(page);
    renderPairs(page);
    renderHistogram(page);
    renderFamilies(page);
    renderBest(page);
    renderAxes(page);
  }

  // ---- Candidate page ---------------------------------------------------------------------------

  function flatten(prefix, v, out) {
    if (Array.isArray(v)) {
      if (v.every(function (x) { return typeof x !== 'object'; })) {
        out.push([prefix, v.slice(0, 12).map(function (x) {
          return typeof x === 'number' ? Number(x.toPrecision(5)) : x;
        }).join(', ') + (v.length > 12 ? ', … (' + v.length + ')' : '')]);
      } else {
        v.slice(0, 8).forEach(function (x, i) { flatten(prefix + '[' + i + ']', x, out); });
      }
    } else if (v && typeof v === 'object') {
      Object.keys(v).forEach(function (k) { flatten(prefix ? prefix + '.' + k : k, v[k], out); });
    } else {
      out.push([prefix, String(v)]);
    }
  }

  function renderCandidate(data) {
    var c = data.candidate || {}, r = c.result || {};
    var fams = ((c.combination && c.combination.families) || []).join(' + ');
    document.title = 'Quartet: candidate ' + c.candidateId;
    setText('k-title', 'Candidate ' + c.candidateId + ': ' + fams);
    setText('subtitle', 'campaign ' + c.campaignId);
    var campaign = el('a', { href: href('/campaigns/' + c.campaignId) }, String(c.campaignId));
    var rows = [['campaign', campaign], ['families', fams],
                ['state', shortEnum(c.state, 'CANDIDATE_STATE_')], ['attempts', String(c.attempts)],
                ['test accuracy', fmtAcc(r.testAccuracy)], ['test loss', num(r.testLoss).toFixed(4)],
                ['parameters', fmtInt(r.parameterCount)], ['wall seconds', num(r.wallSeconds).toFixed(1)],
                ['architecture', r.architecture || ''], ['device', r.device || ''],
                ['worker', c.workerId || ''], ['finished', fmtTime(c.finishedUnixMs)]];
    (c.axisLevels || []).forEach(function (a) { rows.push([a.path, a.value]); });
    if (c.errorClass && c.errorClass !== 'ERROR_CLASS_UNSPECIFIED') {
      rows.push(['error', shortEnum(c.errorClass, 'ERROR_CLASS_') + ': ' + (c.errorMessage || '')]);
    }
    fillTable('t-summary', null, rows);
    var epochs = r.epochs || [];
    function curve(key) { return epochs.map(function (e) { return [num(e.epoch), num(e[key])]; }); }
    lineChart(document.getElementById('chart-loss'), [
      { color: '#2f6fde', points: curve('trainLoss') },
      { color: STATE_COLORS.succeeded, points: curve('testLoss') }
    ], { yMin: 0, yFormat: function (v) { return v.toFixed(2); } });
    lineChart(document.getElementById('chart-accuracy'), [
      { color: '#2f6fde', points: curve('trainAccuracy') },
      { color: STATE_COLORS.succeeded, points: curve('testAccuracy') }
    ], { yFormat: function (v) { return v.toFixed(3); } });
    fillTable('t-epochs', null, epochs.map(function (e) {
      return [String(e.epoch), num(e.trainLoss).toFixed(4), num(e.trainAccuracy).toFixed(4),
              num(e.testLoss).toFixed(4), num(e.testAccuracy).toFixed(4),
              num(e.learningRate).toExponential(2), num(e.loadCv).toFixed(3),
              num(e.samplesPerSecond).toFixed(1), num(e.wallSeconds).toFixed(1)];
    }));
    var box = document.getElementById('analyses');
    var flat = [];
    flatten('', r.analyses || {}, flat);
    flat = flat.filter(function (kv) { return kv[1] !== '0' && kv[1] !== '' && kv[1] !== 'false'; });
    if (flat.length) {
      clear(box);
      box.className = '';
      var t = el('table', { id: 't-analyses' });
      flat.forEach(function (kv) { t.appendChild(row(kv)); });
      box.appendChild(t);
    }
  }

  // ---- Pages ------------------------------------------------------------------------------------

  function idFromPath() {
    var parts = window.location.pathname.split('/');
    return parts[parts.length - 1];
  }

  function poll(path, render) {
    function tick() {
      api(path).then(function (data) {
        if (!document.body.hasAttribute('data-ready')) console.info('quartet: data received');
        clearErrors();
        render(data);
        setText('updated', 'updated ' + new Date().toLocaleTimeString());
        if (!document.body.hasAttribute('data-ready')) {
          // Chromium logs console lines with wall-clock times: bench/dashboard_load takes the
          // page load from this line and the one at the script's start.
          console.info('quartet: first render done');
        }
        document.body.setAttribute('data-ready', '1');
      }).catch(function (err) {
        clearErrors();
        showError(err.message);
      }).then(function () { window.setTimeout(tick, POLL_MS); });
    }
    tick();
  }

  function start() {
    console.info('quartet: script start');
    var page = document.body.getAttribute('data-page');
    var home = document.getElementById('home');
    if (STATIC_DATA) {
      if (home) home.removeAttribute('href');
      renderCampaign(STATIC_DATA);
      setText('updated', 'report generated ' + fmtTime(STATIC_DATA.generatedUnixMs));
      document.body.setAttribute('data-ready', '1');
      return;
    }
    if (home) home.setAttribute('href', href('/'));
    if (page === 'list') poll('/api/campaigns', renderList);
    if (page === 'campaign') poll('/api/campaigns/' + encodeURIComponent(idFromPath()), renderCampaign);
    if (page === 'candidate') {
      poll('/api/candidates/' + encodeURIComponent(idFromPath()), renderCandidate);
    }
  }

  start();
})();
