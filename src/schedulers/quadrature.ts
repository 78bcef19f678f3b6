// Adaptive Gauss-Kronrod (G7/K15) quadrature, standing in for scipy.integrate.quad (QUADPACK qags)
// where the LMS sampler integrates its Lagrange basis polynomials. Ref: QUADPACK `qk15` nodes/weights.
// K15 is exact for polynomials up to degree 22, so LMS coefficients (degree ≤ 3) are exact in one panel.

// Kronrod nodes (positive half; odd indices 1,3,5 and the centre are the Gauss-7 nodes).
const XGK = [
  0.991455371120812639206854697526329, 0.949107912342758524526189684047851, 0.864864423359769072789712788640926, 0.741531185599394439863864773280788,
  0.586087235467691130294144845693013, 0.405845151377397166906606412076961, 0.207784955007898467600689403773245, 0.0,
];
const WGK = [
  0.02293532201052922496373200805897, 0.063092092629978553290700663189204, 0.104790010322250183839876322541518, 0.140653259715525918745189590510238,
  0.16900472663926790282658342659855, 0.190350578064785409913256402421014, 0.204432940075298892414161999234649, 0.209482141084727828012999174891714,
];
// Gauss-7 weights for XGK[1], XGK[3], XGK[5], XGK[7].
const WG = [0.129484966168869693270611432679082, 0.27970539148927666790146777142378, 0.381830050505118944950369775488975, 0.417959183673469387755102040816327];

/** One G7/K15 panel on [a, b]: the K15 value and |K15 - G7| as the error estimate. */
export function gaussKronrod15(f: (x: number) => number, a: number, b: number): { value: number; error: number } {
  const c = 0.5 * (a + b);
  const h = 0.5 * (b - a);
  const fc = f(c);
  let k = WGK[7] * fc;
  let g = WG[3] * fc;
  for (let j = 0; j < 7; j++) {
    const dx = h * XGK[j];
    const s = f(c - dx) + f(c + dx);
    k += WGK[j] * s;
    if (j % 2 === 1) g += WG[(j - 1) / 2] * s;
  }
  return { value: k * h, error: Math.abs((k - g) * h) };
}

/**
 * ∫_a^b f(x) dx by adaptive bisection until the error estimate is below max(epsabs, epsrel·|I|).
 * @example integrate((x) => x * x, 0, 1) // 0.3333333333333333
 */
export function integrate(f: (x: number) => number, a: number, b: number, epsabs = 1e-12, epsrel = 1e-10, maxDepth = 50): number {
  const whole = gaussKronrod15(f, a, b);
  const tol = Math.max(epsabs, epsrel * Math.abs(whole.value));
  const refine = (lo: number, hi: number, panel: { value: number; error: number }, depth: number): number => {
    if (panel.error <= tol * ((hi - lo) / (b - a || 1)) || depth >= maxDepth) return panel.value;
    const mid = 0.5 * (lo + hi);
    return refine(lo, mid, gaussKronrod15(f, lo, mid), depth + 1) + refine(mid, hi, gaussKronrod15(f, mid, hi), depth + 1);
  };
  return refine(a, b, whole, 0);
}
