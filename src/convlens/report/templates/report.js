/* convlens report: the worked example, the playground and the epoch slider. Inline, no network.
   correlate() is PyTorch's Conv2d arithmetic (zero padding, stride) in float64; the browser test
   compares it with convlens.ops.correlate. */
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("convlens-data").textContent);
  var NEG = [33, 102, 172], POS = [179, 88, 6];

  function zeros(h, w) { var o = []; for (var i = 0; i < h; i++) { o.push(new Array(w).fill(0)); } return o; }
  function as3(x) { return Array.isArray(x[0][0]) ? x : [x]; }

  /* x: [C][H][W] (or [H][W]); w: [C][kh][kw] (or [kh][kw]); pad: [ph, pw] or [[lo, hi], [lo, hi]] */
  function correlate(x, w, stride, pad) {
    x = as3(x); w = as3(w);
    stride = stride || [1, 1];
    pad = pad || [0, 0];
    var pr = Array.isArray(pad[0]) ? pad[0] : [pad[0], pad[0]];
    var pc = Array.isArray(pad[1]) ? pad[1] : [pad[1], pad[1]];
    var C = x.length, H = x[0].length, W = x[0][0].length, kh = w[0].length, kw = w[0][0].length;
    var Ho = Math.floor((H + pr[0] + pr[1] - kh) / stride[0]) + 1;
    var Wo = Math.floor((W + pc[0] + pc[1] - kw) / stride[1]) + 1;
    if (Ho < 1 || Wo < 1) { throw new Error("the kernel is larger than the padded image"); }
    var out = zeros(Ho, Wo);
    for (var i = 0; i < Ho; i++) {
      for (var j = 0; j < Wo; j++) {
        var s = 0;
        for (var c = 0; c < C; c++) {
          for (var a = 0; a < kh; a++) {
            var r = i * stride[0] + a - pr[0];
            if (r < 0 || r >= H) { continue; }
            var row = x[c][r], krow = w[c][a];
            for (var b = 0; b < kw; b++) {
              var q = j * stride[1] + b - pc[0];
              if (q >= 0 && q < W) { s += row[q] * krow[b]; }
            }
          }
        }
        out[i][j] = s;
      }
    }
    return out;
  }
  function samePad(k) { var t = k - 1, lo = Math.floor(t / 2); return [lo, t - lo]; }
  function flip(k) { return k.slice().reverse().map(function (r) { return r.slice().reverse(); }); }
  function parseMatrix(text) {
    var rows = text.trim().split(/[;\n]+/).map(function (r) { return r.trim(); }).filter(Boolean);
    var m = rows.map(function (r) {
      return r.split(/[\s,]+/).filter(Boolean).map(function (v) {
        var n = Number(v);
        if (!isFinite(n)) { throw new Error("not a number: " + v); }
        return n;
      });
    });
    if (!m.length || m.some(function (r) { return r.length !== m[0].length; })) {
      throw new Error("rows must have the same number of values");
    }
    if (m.length > 15 || m[0].length > 15) { throw new Error("at most 15 x 15"); }
    return m;
  }
  function absMax(m) {
    var t = 0;
    (function walk(a) { a.forEach(function (v) { if (Array.isArray(v)) { walk(v); } else { t = Math.max(t, Math.abs(v)); } }); })(m);
    return t;
  }
  function colour(v) {
    var t = Math.min(Math.abs(v), 1), e = v > 0 ? POS : NEG;
    return [0, 1, 2].map(function (i) { return Math.round(255 + (e[i] - 255) * t); });
  }
  /* draw m ([H][W]) into canvas: diverging (symmetric +-scale) or grey (min..max) */
  function draw(canvas, m, scale, grey) {
    var H = m.length, W = m[0].length;
    canvas.width = W; canvas.height = H;
    var ctx = canvas.getContext("2d"), img = ctx.createImageData(W, H);
    var lo = Infinity, hi = -Infinity;
    if (grey) { m.forEach(function (r) { r.forEach(function (v) { lo = Math.min(lo, v); hi = Math.max(hi, v); }); }); }
    for (var i = 0; i < H; i++) {
      for (var j = 0; j < W; j++) {
        var p = 4 * (i * W + j), rgb;
        if (grey) { var g = hi > lo ? Math.round(255 * (m[i][j] - lo) / (hi - lo)) : 128; rgb = [g, g, g]; }
        else { rgb = colour(scale > 0 ? m[i][j] / scale : 0); }
        img.data[p] = rgb[0]; img.data[p + 1] = rgb[1]; img.data[p + 2] = rgb[2]; img.data[p + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
  }
  function fmt(v) { return Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : String(Math.round(v * 1e4) / 1e4); }

  var api = { correlate: correlate, flip: flip, parseMatrix: parseMatrix, samePad: samePad };
  window.convlens = api;
  document.documentElement.classList.add("js");

  /* ---------------------------------------------------------------- worked example */
  (function worked() {
    var root = document.getElementById("wx");
    if (!root) { return; }
    var K = D.worked.kernel, I = D.worked.input, conv = false;
    var toggle = document.getElementById("wx-conv"), detail = document.getElementById("wx-detail");
    var kcells = root.querySelectorAll("#wx-kernel td"), icells = root.querySelectorAll("#wx-input td");
    var outs = root.querySelectorAll("#wx-output button.cell");
    function kern() { return conv ? flip(K) : K; }
    function refresh() {
      var k = kern(), out = correlate(I, k);
      kcells.forEach(function (td) { td.textContent = k[+td.dataset.i][+td.dataset.j]; });
      outs.forEach(function (b) { b.textContent = out[+b.dataset.i][+b.dataset.j]; });
      document.getElementById("wx-mode").textContent = conv
        ? "true convolution: the kernel is flipped (rotated 180 degrees) before sliding"
        : "cross-correlation (what a conv layer computes): the kernel as stored";
    }
    function show(b) {
      var r = +b.dataset.i, c = +b.dataset.j, k = kern(), terms = [], s = 0;
      icells.forEach(function (td) {
        var i = +td.dataset.i, j = +td.dataset.j;
        td.classList.toggle("hl", i >= r && i < r + k.length && j >= c && j < c + k[0].length);
      });
      for (var a = 0; a < k.length; a++) {
        for (var q = 0; q < k[0].length; q++) { terms.push(k[a][q] + "\u00d7" + I[r + a][c + q]); s += k[a][q] * I[r + a][c + q]; }
      }
      outs.forEach(function (o) { o.setAttribute("aria-pressed", o === b ? "true" : "false"); });
      detail.textContent = "cell (" + r + ", " + c + "): " + terms.join(" + ") + " = " + s;
      api.worked = { cell: [r, c], sum: s, conv: conv };
    }
    outs.forEach(function (b) {
      b.addEventListener("mouseenter", function () { show(b); });
      b.addEventListener("focus", function () { show(b); });
      b.addEventListener("click", function () { show(b); });
    });
    toggle.addEventListener("change", function () {
      conv = toggle.checked; refresh();
      var cur = root.querySelector('button.cell[aria-pressed="true"]') || outs[0];
      show(cur);
    });
    refresh();
  })();

  /* ---------------------------------------------------------------- playground */
  (function playground() {
    var root = document.getElementById("pg");
    if (!root) { return; }
    var ksel = document.getElementById("pg-kernel"), ktext = document.getElementById("pg-custom");
    var isel = document.getElementById("pg-image"), file = document.getElementById("pg-file");
    var psel = document.getElementById("pg-padding"), status = document.getElementById("pg-status");
    var uploaded = null;
    function kernelText(m) { return m.map(function (r) { return r.map(fmt).join(" "); }).join("; "); }
    function currentKernel() {
      if (ksel.value === "custom") { return parseMatrix(ktext.value); }
      return D.playground.kernels[+ksel.value].weights;
    }
    function currentImage() {
      if (isel.value === "upload") { return uploaded; }
      return D.playground.samples[+isel.value].pixels;
    }
    function run() {
      try {
        var k = currentKernel(), x = currentImage();
        if (!x) { status.textContent = "choose an image file first"; return; }
        var pad = psel.value === "same" ? [samePad(k.length), samePad(k[0].length)] : [0, 0];
        var out = correlate(x, k, [1, 1], pad), s = absMax(out);
        draw(document.getElementById("pg-in"), x, 0, true);
        draw(document.getElementById("pg-k"), k, absMax(k), false);
        draw(document.getElementById("pg-out"), out, s, false);
        api.playground = { input: x, kernel: k, padding: psel.value, output: out };
        status.textContent = "input " + x.length + "\u00d7" + x[0].length + ", kernel " + k.length + "\u00d7" + k[0].length +
          ", output " + out.length + "\u00d7" + out[0].length + "; colour scale \u00b1" + fmt(s) + " (blue negative, orange positive)";
      } catch (err) { status.textContent = "cannot compute: " + err.message; }
    }
    ksel.addEventListener("change", function () {
      if (ksel.value !== "custom") { ktext.value = kernelText(D.playground.kernels[+ksel.value].weights); }
      run();
    });
    ktext.addEventListener("input", function () { ksel.value = "custom"; run(); });
    isel.addEventListener("change", run);
    psel.addEventListener("change", run);
    file.addEventListener("change", function () {
      var f = file.files && file.files[0];
      if (!f) { return; }
      var url = URL.createObjectURL(f), img = new Image();
      img.onload = function () {
        var side = D.playground.max_side, sc = Math.min(1, side / Math.max(img.naturalWidth, img.naturalHeight));
        var w = Math.max(1, Math.round(img.naturalWidth * sc)), h = Math.max(1, Math.round(img.naturalHeight * sc));
        var cv = document.createElement("canvas"); cv.width = w; cv.height = h;
        var ctx = cv.getContext("2d"); ctx.drawImage(img, 0, 0, w, h);
        var d = ctx.getImageData(0, 0, w, h).data, m = zeros(h, w);
        for (var i = 0; i < h; i++) { for (var j = 0; j < w; j++) { var p = 4 * (i * w + j); m[i][j] = (0.2126 * d[p] + 0.7152 * d[p + 1] + 0.0722 * d[p + 2]) / 255; } }
        URL.revokeObjectURL(url);
        uploaded = m; isel.value = "upload"; run();
      };
      img.onerror = function () { status.textContent = "cannot read that file as an image"; URL.revokeObjectURL(url); };
      img.src = url;
    });
    ktext.value = kernelText(D.playground.kernels[0].weights);
    run();
  })();

  /* ---------------------------------------------------------------- epoch slider */
  (function slider() {
    var root = document.getElementById("ev"), S = D.slider;
    if (!root || !S || S.missing) { return; }
    var range = document.getElementById("ev-slider"), label = document.getElementById("ev-epoch");
    var psel = document.getElementById("ev-probe"), kbox = document.getElementById("ev-kernels");
    var mbox = document.getElementById("ev-maps"), scaleOut = document.getElementById("ev-scale");
    var O = S.weights[0].length, shown = Math.min(O, D.max_channels);
    function canvases(box, n, prefix) {
      var list = [];
      for (var c = 0; c < n; c++) {
        var fig = document.createElement("figure"), cv = document.createElement("canvas"), cap = document.createElement("figcaption");
        cv.className = "map small"; cv.setAttribute("role", "img"); cv.setAttribute("aria-label", prefix + " channel " + c);
        cap.textContent = "ch " + c; fig.appendChild(cv); fig.appendChild(cap); box.appendChild(fig); list.push(cv);
      }
      return list;
    }
    var kc = canvases(kbox, shown, "kernel"), mc = mbox ? canvases(mbox, shown, "feature map") : [];
    function update() {
      var e = +range.value, W = S.weights[e], epoch = S.epochs[e];
      label.textContent = "epoch " + epoch;
      range.setAttribute("aria-valuetext", "epoch " + epoch);
      var ks = absMax(W);
      for (var c = 0; c < shown; c++) { draw(kc[c], W[c][0], ks, false); }
      var state = { index: e, epoch: epoch, kernel_scale: ks };
      if (mbox && S.probes.length) {
        var p = S.probes[+psel.value], maps = [], ms = 0;
        for (var o = 0; o < O; o++) {
          var m = correlate(p.x, W[o], S.stride, S.padding), b = S.bias[e][o];
          m = m.map(function (r) { return r.map(function (v) { return v + b; }); });
          maps.push(m); ms = Math.max(ms, absMax(m));
        }
        for (c = 0; c < shown; c++) { draw(mc[c], maps[c], ms, false); }
        state.maps = maps; state.probe = p.index; state.map_scale = ms;
        scaleOut.textContent = "kernels \u00b1" + fmt(ks) + ", feature maps \u00b1" + fmt(ms);
      } else { scaleOut.textContent = "kernels \u00b1" + fmt(ks); }
      api.slider = state;
    }
    range.addEventListener("input", update);
    if (psel) { psel.addEventListener("change", update); }
    update();
  })();
})();
