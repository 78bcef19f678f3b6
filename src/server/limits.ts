// Every limit the server enforces, with its default and the `reimagine serve` flag that changes it
// (docs/security.md lists the same table), and the per-job compute budget: output pixels x images x
// denoising steps, refused with a 422 that names the flag before anything is queued.
import { ValidationError } from "./validate.js";

export interface ServerLimits {
  /** Largest input image and largest output, in pixels (--max-pixels). */
  maxPixels: number;
  /** Largest request body in bytes (--max-body-mb). */
  maxBodyBytes: number;
  /** Most work one job may ask for: width x height x images x denoising steps (--max-job-mpx-steps, in millions). */
  maxJobPixelSteps: number;
  /** Longest an upload may take to decode, inside the queue (--decode-timeout-s). */
  decodeTimeoutS: number;
  /** Bytes of finished jobs' PNGs kept for GET /v1/jobs/:id/images (--keep-results-mb); oldest dropped first. */
  maxResultBytes: number;
  /** A request (headers and body) must arrive within this many seconds (--request-timeout-s). */
  requestTimeoutS: number;
}

export const DEFAULT_LIMITS: ServerLimits = {
  maxPixels: 16 * 1024 * 1024,
  maxBodyBytes: 64 * 1024 * 1024,
  maxJobPixelSteps: 256e6, // e.g. 1024x1024 x 4 images x 60 steps, or 512x512 x 16 images x 60 steps
  decodeTimeoutS: 20,
  maxResultBytes: 256 * 1024 * 1024,
  requestTimeoutS: 60,
};

/** JSON nesting the API accepts: A1111 bodies nest 4-5 levels (alwayson_scripts); deeper is refused. */
export const MAX_JSON_DEPTH = 32;

export interface JobShape {
  width: number;
  height: number;
  /** Images produced (batch size x iterations, or one per strength of a sweep). */
  images: number;
  /** Denoising steps of each image, summed over a sweep's strengths. */
  stepsPerImage: number;
}

/**
 * Refuses a job whose pixels x images x steps exceed the budget, naming the flag that raises it.
 * @example checkJobBudget({ width: 512, height: 512, images: 4, stepsPerImage: 30 }, DEFAULT_LIMITS)
 */
export function checkJobBudget(job: JobShape, limits: ServerLimits, field = "steps"): void {
  const cost = job.width * job.height * job.images * job.stepsPerImage;
  if (cost <= limits.maxJobPixelSteps) return;
  const mpx = (n: number) => `${Math.round(n / 1e6)}M`;
  throw new ValidationError(
    field,
    `this job is ${job.width}x${job.height} x ${job.images} image(s) x ${job.stepsPerImage} steps = ${mpx(cost)} pixel-steps, over the server's limit of ${mpx(limits.maxJobPixelSteps)} ` +
      `(reimagine serve --max-job-mpx-steps ${Math.round(limits.maxJobPixelSteps / 1e6)}): ask for fewer images, fewer steps or a smaller size`,
    "job_too_large",
  );
}
