// Which part of an event a plugin reads: the whole value, a top-level field
// of a JSON object, or a column of a CSV row; read as the Rust SDK reads
// them, so a plugin gives the same answer in either language (JSON integers
// beyond 2^53 excepted: JavaScript numbers cannot hold them).

// ignoreBOM: a byte-order mark is part of the value, as in Rust.
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
// Unicode White_Space, which the Rust SDK trims (String.prototype.trim also
// trims U+FEFF and keeps U+0085).
const EDGE_SPACE =
  /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/g;

/** The bytes as UTF-8 text without surrounding white space. */
export function trimmedText(bytes) {
  let text;
  try {
    text = decoder.decode(bytes);
  } catch (e) {
    throw new Error(`value is not UTF-8: ${e.message}`);
  }
  return text.replace(EDGE_SPACE, "");
}

/** Splits one CSV row (bytes): commas between fields, `"` quotes, `""` a
 * literal quote inside quotes, text after a closing quote kept. */
export function splitCsv(line) {
  let n = line.length;
  if (n && line[n - 1] === 13) n -= 1;
  const out = [];
  const find = (from) => {
    const at = line.subarray(0, n).indexOf(44, from);
    return at < 0 ? n : at;
  };
  let i = 0;
  for (;;) {
    if (i < n && line[i] === 34) {
      const field = [];
      let j = i + 1;
      for (;;) {
        if (j >= n) throw new Error("unterminated quoted field");
        const c = line[j];
        if (c === 34) {
          if (j + 1 < n && line[j + 1] === 34) {
            field.push(34);
            j += 2;
            continue;
          }
          break;
        }
        field.push(c);
        j += 1;
      }
      i = j + 1;
      const end = find(i);
      for (let k = i; k < end; k++) field.push(line[k]);
      out.push(Uint8Array.from(field));
      i = end;
    } else {
      const end = find(i);
      out.push(line.subarray(i, end));
      i = end;
    }
    if (i >= n) return out;
    i += 1;
    if (i === n) {
      out.push(new Uint8Array(0));
      return out;
    }
  }
}

/** A number as the Rust SDK prints it: shortest digits, never an exponent. */
export function numberText(x) {
  if (!Number.isFinite(x)) throw new Error("invalid JSON: number out of range");
  if (Object.is(x, -0)) return "-0";
  const s = String(x);
  const m = /^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(s);
  if (!m) return s;
  const [, sign, lead, rest = "", exp] = m;
  const digits = lead + rest;
  const point = 1 + Number(exp);
  if (point <= 0) return `${sign}0.${"0".repeat(-point)}${digits}`;
  if (point >= digits.length) return sign + digits + "0".repeat(point - digits.length);
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

function wellFormed(s) {
  return typeof s.isWellFormed === "function"
    ? s.isWellFormed()
    : !/[\ud800-\udbff](?![\udc00-\udfff])|(?:[^\ud800-\udbff]|^)[\udc00-\udfff]/.test(s);
}

/** Top-level field `name` of a JSON object: undefined when absent, the text
 * of a scalar (strings without quotes, null as ""), or null for an array or
 * object. */
export function jsonField(bytes, name) {
  let doc;
  try {
    doc = JSON.parse(decoder.decode(bytes));
  } catch (e) {
    throw new Error(`invalid JSON: ${e.message}`);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    throw new Error("invalid JSON: expected a JSON object");
  }
  if (!Object.prototype.hasOwnProperty.call(doc, name)) return undefined;
  const v = doc[name];
  if (v === null) return "";
  switch (typeof v) {
    case "string":
      if (!wellFormed(v)) throw new Error("invalid JSON: lone surrogate in a string");
      return v;
    case "number":
      return numberText(v);
    case "boolean":
      return v ? "true" : "false";
    default:
      return null;
  }
}

/** Where a plugin finds what it reads: `Field.WHOLE`, a JSON field
 * (`Field.json("gender")`) or a CSV column (`Field.column(1)`). */
export class Field {
  constructor(kind, name = null, index = 0) {
    this.kind = kind;
    this.name = name;
    this.index = index;
  }

  /** A top-level field of a JSON object. */
  static json(name) {
    return new Field("json", name);
  }

  /** A CSV column, 0-based. */
  static column(index) {
    return new Field("column", null, index);
  }

  /** The field a `key` setting names, `columns` being the CSV header when
   * the input is CSV: no key is the whole value, a key with columns that
   * column, a key alone that JSON field. */
  static keyed(key, columns) {
    if (key === null || key === undefined) return Field.WHOLE;
    if (columns === null || columns === undefined) return Field.json(key);
    const i = columns.indexOf(key);
    if (i < 0) throw new Error(`key ${JSON.stringify(key)} is not one of the columns ${JSON.stringify(columns)}`);
    return Field.column(i);
  }
}
Field.WHOLE = new Field("whole");

/** One event, read field by field (a CSV row is split once). */
export class Record {
  constructor(event) {
    this.event = event;
    this.split = null;
  }

  /** The CSV columns of the value. */
  columns() {
    if (this.split === null) this.split = splitCsv(this.event.value);
    return this.split;
  }

  /** The field as a key to group by: a value or column as trimmed text, a
   * JSON scalar as text; throws an Error saying why it cannot. */
  key(field) {
    if (field.kind === "whole") return trimmedText(this.event.value);
    if (field.kind === "json") {
      const text = jsonField(this.event.value, field.name);
      if (text === undefined) throw new Error(`no field ${JSON.stringify(field.name)}`);
      if (text === null) {
        throw new Error(`field ${JSON.stringify(field.name)} is not a string, number, boolean or null`);
      }
      return text;
    }
    const columns = this.columns();
    if (field.index >= columns.length) {
      throw new Error(`row has ${columns.length} columns, the key is column ${field.index + 1}`);
    }
    return trimmedText(columns[field.index]);
  }
}
