# Goldens for src/image.test.ts ("ssim against scikit-image"): scikit-image's structural_similarity with the
# settings of Wang et al. 2004 that ssim() implements (Gaussian window sigma 1.5 -> 11 taps, K1 0.01,
# K2 0.03, data range 255, population covariance), on luminance 0.299 R + 0.587 G + 0.114 B.
# The images are integer formulas the test rebuilds. Run: python3 ssim_skimage.py (numpy, scikit-image).
import numpy as np
from skimage.metrics import structural_similarity

def img(w, h, f):
    return np.array([[f(x, y) for x in range(w)] for y in range(h)], dtype=np.float64)

def luma(r, g, b):
    return 0.299 * r + 0.587 * g + 0.114 * b

def ssim(a, b):
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)

ramp = img(16, 12, lambda x, y: (x * 13 + y * 7) % 256)
wavy = img(16, 12, lambda x, y: (x * 13 + y * 7 + (x * y) % 23) % 256)
flat = img(16, 12, lambda x, y: 128)
checker = img(13, 11, lambda x, y: 40 + 170 * ((x // 2 + y // 2) % 2))
blur = img(13, 11, lambda x, y: 90 + 60 * ((x // 2 + y // 2) % 2))
print("ramp vs wavy", repr(ssim(ramp, wavy)))
print("ramp vs flat", repr(ssim(ramp, flat)))
print("checker vs blur", repr(ssim(checker, blur)))
# colour: R, G, B from different formulas, compared through luminance
r1 = img(12, 12, lambda x, y: (x * 20) % 256); g1 = img(12, 12, lambda x, y: (y * 20) % 256); b1 = img(12, 12, lambda x, y: ((x + y) * 10) % 256)
r2 = img(12, 12, lambda x, y: (x * 20 + 15) % 256); g2 = img(12, 12, lambda x, y: (y * 18) % 256); b2 = img(12, 12, lambda x, y: (x * y) % 256)
print("colour pair", repr(ssim(luma(r1, g1, b1), luma(r2, g2, b2))))
# src/pipeline/sweep.test.ts: its gradient picture() and the stub pipeline's output (blend to grey 128
# by strength s, rounded half up as Math.round) at s = 0.5 and s = 1
pr = img(48, 40, lambda x, y: (x * 5) & 255); pg = img(48, 40, lambda x, y: (y * 6) & 255); pb = img(48, 40, lambda x, y: ((x + y) * 3) & 255)
stub = lambda v, s: np.floor(v * (1 - s) + 128 * s + 0.5)
for s in (0.5, 1.0):
    print("sweep stub", s, repr(ssim(luma(pr, pg, pb), luma(stub(pr, s), stub(pg, s), stub(pb, s)))))
