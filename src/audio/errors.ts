// One error type for every way a clip can be unusable (unknown format, truncated or corrupt file, empty, too short,
// NaN/Inf samples). The message always starts with the file name so a bad clip in a 3000-file corpus is found at once.
export class AudioError extends Error {
  readonly file: string;
  readonly reason: string;

  constructor(file: string, reason: string) {
    super(`${file}: ${reason}`);
    this.name = 'AudioError';
    this.file = file;
    this.reason = reason;
  }
}
