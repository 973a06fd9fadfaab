// Complex FFT in float64 for any length, for the log-mel feature extractor's STFT (n_fft 400 = 2^4 * 5^2 is not a
// power of two). Powers of two: iterative radix-2 with twiddles computed directly (no recurrence, so no drift).
// Other lengths: Bluestein's chirp-z, which rewrites the length-n DFT as a circular convolution of power-of-two length
// m >= 2n - 1: X[k] = w[k] * sum_j (x[j] w[j]) conj(w[k - j]), w[k] = exp(-i pi k^2 / n). O(m log m) per transform.

export class PowerOfTwoFFT {
  readonly n: number;
  private readonly cos: Float64Array;
  private readonly sin: Float64Array;
  private readonly bitReversed: Uint32Array;

  constructor(n: number) {
    if (!Number.isSafeInteger(n) || n < 1 || (n & (n - 1)) !== 0 || n > 1 << 26) throw new RangeError(`PowerOfTwoFFT: length ${n} is not a power of two in [1, 2^26]`);
    this.n = n;
    const half = n >> 1;
    this.cos = new Float64Array(half);
    this.sin = new Float64Array(half);
    for (let k = 0; k < half; k++) {
      this.cos[k] = Math.cos((2 * Math.PI * k) / n);
      this.sin[k] = -Math.sin((2 * Math.PI * k) / n);
    }
    this.bitReversed = new Uint32Array(n);
    const bits = Math.round(Math.log2(n));
    for (let i = 0; i < n; i++) {
      let r = 0;
      for (let b = 0; b < bits; b++) r |= ((i >> b) & 1) << (bits - 1 - b);
      this.bitReversed[i] = r;
    }
  }

  /** In place: (re, im) <- sum_j x[j] exp(-2 pi i j k / n). */
  forward(re: Float64Array, im: Float64Array): void {
    const n = this.n;
    const rev = this.bitReversed;
    for (let i = 0; i < n; i++) {
      const j = rev[i];
      if (j > i) {
        let t = re[i];
        re[i] = re[j];
        re[j] = t;
        t = im[i];
        im[i] = im[j];
        im[j] = t;
      }
    }
    for (let size = 2; size <= n; size <<= 1) {
      const halfSize = size >> 1;
      const step = n / size;
      for (let start = 0; start < n; start += size) {
        for (let k = 0, t = 0; k < halfSize; k++, t += step) {
          const wr = this.cos[t];
          const wi = this.sin[t];
          const a = start + k;
          const b = a + halfSize;
          const xr = re[b] * wr - im[b] * wi;
          const xi = re[b] * wi + im[b] * wr;
          re[b] = re[a] - xr;
          im[b] = im[a] - xi;
          re[a] += xr;
          im[a] += xi;
        }
      }
    }
  }
}

/** Forward DFT of any length n >= 1 (in place on (re, im)), exact to float64 rounding. */
export class FFT {
  readonly n: number;
  private readonly pow2: PowerOfTwoFFT;
  // Bluestein state (when n is not a power of two)
  private readonly chirpRe: Float64Array | null = null;
  private readonly chirpIm: Float64Array | null = null;
  private readonly kernelRe: Float64Array | null = null;
  private readonly kernelIm: Float64Array | null = null;
  private readonly bufRe: Float64Array | null = null;
  private readonly bufIm: Float64Array | null = null;

  constructor(n: number) {
    if (!Number.isSafeInteger(n) || n < 1 || n > 1 << 24) throw new RangeError(`FFT: length ${n} must be an integer in [1, 2^24]`);
    this.n = n;
    if ((n & (n - 1)) === 0) {
      this.pow2 = new PowerOfTwoFFT(n);
      return;
    }
    let m = 1;
    while (m < 2 * n - 1) m <<= 1;
    this.pow2 = new PowerOfTwoFFT(m);
    const chirpRe = new Float64Array(n);
    const chirpIm = new Float64Array(n);
    for (let k = 0; k < n; k++) {
      // k^2 mod 2n keeps the angle small, so cos/sin stay accurate for large k
      const k2 = (k * k) % (2 * n);
      chirpRe[k] = Math.cos((Math.PI * k2) / n);
      chirpIm[k] = -Math.sin((Math.PI * k2) / n);
    }
    // convolution kernel conj(w[j]) at offsets j = -(n-1) .. n-1, wrapped circularly into m, transformed once
    const kernelRe = new Float64Array(m);
    const kernelIm = new Float64Array(m);
    kernelRe[0] = chirpRe[0];
    kernelIm[0] = -chirpIm[0];
    for (let k = 1; k < n; k++) {
      kernelRe[k] = kernelRe[m - k] = chirpRe[k];
      kernelIm[k] = kernelIm[m - k] = -chirpIm[k];
    }
    this.pow2.forward(kernelRe, kernelIm);
    this.chirpRe = chirpRe;
    this.chirpIm = chirpIm;
    this.kernelRe = kernelRe;
    this.kernelIm = kernelIm;
    this.bufRe = new Float64Array(m);
    this.bufIm = new Float64Array(m);
  }

  /** In place: (re, im)[0..n) <- its DFT, X[k] = sum_j x[j] exp(-2 pi i j k / n). */
  forward(re: Float64Array, im: Float64Array): void {
    if (re.length < this.n || im.length < this.n) throw new RangeError(`FFT: buffers of ${re.length}/${im.length} for length ${this.n}`);
    if (!this.chirpRe) {
      this.pow2.forward(re, im);
      return;
    }
    const n = this.n;
    const m = this.pow2.n;
    const cr = this.chirpRe;
    const ci = this.chirpIm!;
    const kr = this.kernelRe!;
    const ki = this.kernelIm!;
    const ar = this.bufRe!;
    const ai = this.bufIm!;
    for (let j = 0; j < n; j++) {
      ar[j] = re[j] * cr[j] - im[j] * ci[j];
      ai[j] = re[j] * ci[j] + im[j] * cr[j];
    }
    ar.fill(0, n);
    ai.fill(0, n);
    this.pow2.forward(ar, ai);
    // pointwise product with the kernel's spectrum, conjugated so the next forward transform acts as an inverse
    for (let k = 0; k < m; k++) {
      const pr = ar[k] * kr[k] - ai[k] * ki[k];
      const pi = ar[k] * ki[k] + ai[k] * kr[k];
      ar[k] = pr;
      ai[k] = -pi;
    }
    this.pow2.forward(ar, ai);
    const scale = 1 / m;
    for (let k = 0; k < n; k++) {
      // inverse = conj(forward(conj(.))) / m
      const yr = ar[k] * scale;
      const yi = -ai[k] * scale;
      re[k] = yr * cr[k] - yi * ci[k];
      im[k] = yr * ci[k] + yi * cr[k];
    }
  }
}
