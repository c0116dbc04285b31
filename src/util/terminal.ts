/**
 * Whether a stream gets live output (progress bars, lines rewritten in place): a terminal,
 * unless the user asked for plain output (NO_COLOR, TERM=dumb). Pipes, files and CI logs get
 * plain lines.
 */
export function isLiveTerminal(stream: NodeJS.WriteStream): boolean {
  return stream.isTTY === true && !process.env.NO_COLOR && process.env.TERM !== 'dumb';
}
