/**
 * Rules for numeric options, checked where they enter: by the CLI's option parsing, and again
 * by the stages for callers of the API. A bad value is a UsageError naming the flag and the
 * value as given.
 */
import { UsageError } from './errors.ts';

export interface NumberRule {
  readonly integer?: boolean;
  readonly min?: number;
  /** The value must be greater than min, not equal to it. */
  readonly minExclusive?: boolean;
  readonly max?: number;
  readonly maxExclusive?: boolean;
}

/** The rule in words, for help text and errors: "a whole number ≥ 1", "a number in [0, 1)". */
export function describeRule(rule: NumberRule): string {
  const kind = rule.integer ? 'a whole number' : 'a number';
  const { min, max } = rule;
  if (min !== undefined && max !== undefined) return `${kind} in ${rule.minExclusive ? '(' : '['}${min}, ${max}${rule.maxExclusive ? ')' : ']'}`;
  if (min !== undefined) return `${kind} ${rule.minExclusive ? '>' : '≥'} ${min}`;
  if (max !== undefined) return `${kind} ${rule.maxExclusive ? '<' : '≤'} ${max}`;
  return kind;
}

/** Parses and checks one value of `--flag`; throws a UsageError that quotes what was typed. */
export function checkNumber(flag: string, value: unknown, rule: NumberRule): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : Number.NaN;
  const bad = () => new UsageError(`--${flag} ${typeof value === 'string' || typeof value === 'number' ? value : JSON.stringify(value)}: must be ${describeRule(rule)}`);
  if (Array.isArray(value)) throw new UsageError(`--${flag} is given ${value.length} times; give it once`);
  if (!Number.isFinite(n)) throw bad();
  if (rule.integer && !Number.isInteger(n)) throw bad();
  if (rule.min !== undefined && (rule.minExclusive ? n <= rule.min : n < rule.min)) throw bad();
  if (rule.max !== undefined && (rule.maxExclusive ? n >= rule.max : n > rule.max)) throw bad();
  return n;
}

export const WHOLE_POSITIVE: NumberRule = { integer: true, min: 1 };
export const FRACTION: NumberRule = { min: 0, max: 1, maxExclusive: true };

