// Canny edge detector, bit-exact with OpenCV's cv2.Canny(img, low, high) (aperture 3, L1 gradient), which the A1111
// ControlNet extension's "canny" preprocessor calls on the RGB image. Ref: OpenCV modules/imgproc/src/canny.cpp.
// Hand-written (~100 lines of integer maths) instead of an OpenCV wasm build: that is an 11 MB module with a
// 2.4 s start-up for this one function, and this port gives the same bytes (canny.test.ts: goldens from OpenCV 4.6).

/**
 * cv2.Canny on an 8-bit image with `channels` interleaved channels (1 or 3): returns one 0/255 byte per pixel.
 * 1. Sobel 3x3 dx, dy per channel (border replicate); |dx| + |dy| per channel, keeping the channel with the
 *    largest magnitude (the first on ties) and its dx, dy.
 * 2. Non-maximum suppression along the gradient's sector (tan 22.5 deg in 15-bit fixed point, as OpenCV).
 * 3. Hysteresis: pixels above `high` seed edges that grow through 8-connected pixels above `low`.
 *
 * @example
 *   const edges = canny(img.data, img.width, img.height, 3, 100, 200); // A1111's defaults
 */
export function canny(src: Uint8Array, width: number, height: number, channels: number, lowThreshold: number, highThreshold: number): Uint8Array {
  if (src.length !== width * height * channels) throw new Error(`canny: ${src.length} bytes for ${width}x${height}x${channels}`);
  if (lowThreshold > highThreshold) [lowThreshold, highThreshold] = [highThreshold, lowThreshold];
  const low = Math.floor(lowThreshold);
  const high = Math.floor(highThreshold);
  const W = width + 2; // magnitude and map rows carry a 1-pixel frame of zeros / "not an edge"
  const mag = new Int32Array(W * (height + 2));
  const dxs = new Int32Array(width * height);
  const dys = new Int32Array(width * height);

  // 1. gradients (Sobel, BORDER_REPLICATE) and the per-pixel strongest channel
  const row = (y: number) => Math.min(Math.max(y, 0), height - 1) * width * channels;
  const col = (x: number) => Math.min(Math.max(x, 0), width - 1) * channels;
  for (let y = 0; y < height; y++) {
    const ra = row(y - 1),
      rc = row(y),
      rb = row(y + 1);
    for (let x = 0; x < width; x++) {
      const cl = col(x - 1),
        cc = col(x),
        cr = col(x + 1);
      let best = -1,
        bdx = 0,
        bdy = 0;
      for (let c = 0; c < channels; c++) {
        const tl = src[ra + cl + c],
          t = src[ra + cc + c],
          tr = src[ra + cr + c];
        const l = src[rc + cl + c],
          r = src[rc + cr + c];
        const bl = src[rb + cl + c],
          b = src[rb + cc + c],
          br = src[rb + cr + c];
        const dx = tr + 2 * r + br - (tl + 2 * l + bl); // [-1 0 1] x [1 2 1]^T
        const dy = bl + 2 * b + br - (tl + 2 * t + tr);
        const m = Math.abs(dx) + Math.abs(dy);
        if (m > best) {
          best = m;
          bdx = dx;
          bdy = dy;
        }
      }
      mag[(y + 1) * W + x + 1] = best;
      dxs[y * width + x] = bdx;
      dys[y * width + x] = bdy;
    }
  }

  // 2. non-maximum suppression: map 0 = may be an edge, 1 = not an edge, 2 = edge; strong pixels are pushed
  const SHIFT = 15;
  const TG22 = Math.trunc(0.4142135623730950488016887242097 * (1 << SHIFT) + 0.5);
  const map = new Uint8Array(W * (height + 2)).fill(1);
  const stack: number[] = [];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y + 1) * W + x + 1;
      const m = mag[i];
      let keep = false;
      if (m > low) {
        const xs = dxs[y * width + x],
          ys = dys[y * width + x];
        const ax = Math.abs(xs),
          ay = Math.abs(ys) * (1 << SHIFT);
        const tg22x = ax * TG22;
        if (ay < tg22x)
          keep = m > mag[i - 1] && m >= mag[i + 1]; // horizontal gradient: compare left/right
        else if (ay > tg22x + ax * (1 << (SHIFT + 1)))
          keep = m > mag[i - W] && m >= mag[i + W]; // vertical
        else {
          const s = (xs ^ ys) < 0 ? -1 : 1; // diagonal
          keep = m > mag[i - W - s] && m > mag[i + W + s];
        }
      }
      if (!keep) continue;
      if (m > high) {
        map[i] = 2;
        stack.push(i);
      } else map[i] = 0;
    }
  }

  // 3. hysteresis: grow edges through candidate pixels
  const around = [-1, 1, -W - 1, -W, -W + 1, W - 1, W, W + 1];
  while (stack.length > 0) {
    const i = stack.pop()!;
    for (const d of around) {
      if (map[i + d] === 0) {
        map[i + d] = 2;
        stack.push(i + d);
      }
    }
  }
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) out[y * width + x] = map[(y + 1) * W + x + 1] === 2 ? 255 : 0;
  return out;
}
