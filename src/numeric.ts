// Scalar rounding with numpy/torch semantics, shared by the schedulers (timestep spacing), the
// image code (float -> uint8) and the tiny VAE's latent quantisation, so all three round alike.

/**
 * Round half to even, as numpy's `round` and `torch.round` (JavaScript's Math.round rounds half up).
 * @example [0.5, 1.5, 2.5, -0.5, -1.5].map(roundHalfEven) // [0, 2, 2, -0, -2]
 */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
