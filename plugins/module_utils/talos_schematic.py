# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Talos Image Factory schematic IDs, computed offline.

The factory (siderolabs/image-factory, pkg/schematic) decodes a schematic into its Go structs and
marshals them again with go-yaml (4-space indent, struct field order, ``omitempty``); the schematic ID
is the sha256 of that text. This module writes the same text for the part of a schematic this
collection uses: ``customization.extraKernelArgs``, ``customization.meta`` and
``customization.systemExtensions.officialExtensions``. The scalar styles follow go-yaml's encoder
(``stringv``) and its libyaml-derived emitter (``analyze_scalar``, ``select_scalar_style``).
"""

from __future__ import annotations

import hashlib
import re

INDENT = 4
EMPTY_SCHEMATIC = "customization: {}\n"

# Plain scalars go-yaml would read back as something other than a string (resolve.go) ...
_SPECIAL = {"", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE",
            ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF",
            ".nan", ".NaN", ".NAN", "<<"}
# ... or that YAML 1.1 readers would (encode.go isOldBool, isBase60Float): go-yaml quotes those too.
_OLD_BOOL = {"y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "n", "N", "no", "No", "NO", "off", "Off", "OFF"}
_BASE60 = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_GO_INT = re.compile(r"^[-+]?(0[xX](_?[0-9a-fA-F])+|0[oO](_?[0-7])+|0[bB](_?[01])+|0(_?[0-7])*|[1-9](_?[0-9])*)$")
_YAML_BIN = re.compile(r"^-?0b[01]+$")
_TIMESTAMP = re.compile(r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
                        r"([Tt ][0-9]{1,2}:[0-9]{2}:[0-9]{2}(\.[0-9]*)?\s*(Z|[-+][0-9]{1,2}(:[0-9]{2})?)?)?$")


class SchematicError(ValueError):
    pass


def _resolves_to_string(text):
    if text in _SPECIAL:
        return False
    numeric = (_GO_INT, _FLOAT, _YAML_BIN, _TIMESTAMP)
    return not (text[:1] and text[0] in "+-.0123456789" and any(rx.match(text) for rx in numeric))


def _printable(char):
    code = ord(char)
    return (char in "\t\n\r" or 0x20 <= code <= 0x7E or code == 0x85 or 0xA0 <= code <= 0xD7FF
            or 0xE000 <= code <= 0xFFFD and code != 0xFEFF or 0x10000 <= code <= 0x10FFFF)


def _analyze(text):
    """(block_plain_allowed, single_quoted_allowed, block_allowed) as the emitter's analyze_scalar."""
    if not text:
        return False, True, False
    flow_ind = block_ind = False
    if text.startswith(("---", "...")):
        flow_ind = block_ind = True
    line_breaks = special = tabs = False
    leading_space = leading_break = trailing_space = trailing_break = False
    break_space = space_break = previous_space = previous_break = False
    blank = " \t\n\r\x85\u2028\u2029"
    preceded_ws = True
    last = len(text) - 1
    for i, char in enumerate(text):
        followed_ws = i == last or text[i + 1] in blank
        if i == 0:
            if char in "#,[]{}&*!|>'\"%@`":
                flow_ind = block_ind = True
            elif char in "?:":
                flow_ind = True
                block_ind = block_ind or followed_ws
            elif char == "-" and followed_ws:
                flow_ind = block_ind = True
        else:
            if char in ",?[]{}":
                flow_ind = True
            elif char == ":":
                flow_ind = True
                block_ind = block_ind or followed_ws
            elif char == "#" and preceded_ws:
                flow_ind = block_ind = True
        if char == "\t":
            tabs = True
        if not _printable(char):
            special = True
        if char == " ":
            leading_space = leading_space or i == 0
            trailing_space = trailing_space or i == last
            break_space = break_space or previous_break
            previous_space, previous_break = True, False
        elif char in "\n\r\x85\u2028\u2029":
            line_breaks = True
            leading_break = leading_break or i == 0
            trailing_break = trailing_break or i == last
            space_break = space_break or previous_space
            previous_space, previous_break = False, True
        else:
            previous_space = previous_break = False
        preceded_ws = char in blank
    block_plain = single = block = True
    if leading_space or leading_break or trailing_space or trailing_break:
        block_plain = False
    if trailing_space:
        block = False
    if break_space:
        block_plain = single = False
    if space_break or tabs or special:
        block_plain = single = False
    if space_break or special:
        block = False
    if line_breaks or block_ind:
        block_plain = False
    del flow_ind  # block context only: flow indicators do not matter here
    return block_plain, single, block


_ESCAPES = {"\0": "0", "\a": "a", "\b": "b", "\t": "t", "\n": "n", "\v": "v", "\f": "f", "\r": "r",
            "\x1b": "e", '"': '"', "\\": "\\", "\x85": "N", "\xa0": "_", "\u2028": "L", "\u2029": "P"}


def _double_quoted(text):
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append("\\" + _ESCAPES[char])
        elif not _printable(char) or char == "\ufeff":
            code = ord(char)
            out.append("\\x%02X" % code if code <= 0xFF else "\\u%04X" % code if code <= 0xFFFF else "\\U%08X" % code)
        else:
            out.append(char)
    return '"%s"' % "".join(out)


def _literal(text, content_indent):
    hint = str(INDENT) if text[:1] in (" ", "\n") else ""
    if not text.endswith("\n"):
        chomp = "-"
    elif text.endswith("\n\n") or text == "\n":
        chomp = "+"
    else:
        chomp = ""
    body = text[:-1] if text.endswith("\n") else text
    pad = " " * content_indent
    lines = [(pad + line) if line else "" for line in body.split("\n")]
    return "|%s%s\n%s" % (hint, chomp, "\n".join(lines))


def scalar(text, content_indent):
    """A string value as go-yaml writes it in block context; content_indent is where a literal block's
    lines start."""
    plain_ok = _resolves_to_string(text) and text not in _OLD_BOOL and not _BASE60.match(text)
    block_plain, single, block = _analyze(text)
    if "\n" in text:
        return _literal(text, content_indent) if block else _double_quoted(text)
    if plain_ok and block_plain:
        return text
    if plain_ok and single:
        return "'%s'" % text.replace("'", "''")
    return _double_quoted(text)


def normalize(extensions=None, kernel_args=None, meta=None):
    """The three inputs checked and typed as the factory's structs hold them."""
    extensions = [str(e) for e in extensions or []]
    kernel_args = [str(a) for a in kernel_args or []]
    entries = []
    for index, entry in enumerate(meta or []):
        if not isinstance(entry, dict) or set(entry) - {"key", "value"} or "key" not in entry:
            raise SchematicError("meta[%d] must be a mapping with key and value, got %r" % (index, entry))
        key = entry["key"]
        if isinstance(key, bool) or not isinstance(key, int):
            try:
                key = int(str(key), 0)
            except ValueError:
                raise SchematicError("meta[%d].key must be an integer 0-255, got %r" % (index, entry["key"])) from None
        if not 0 <= key <= 255:
            raise SchematicError("meta[%d].key must be an integer 0-255, got %r" % (index, key))
        value = entry.get("value")
        entries.append({"key": key, "value": "" if value is None else str(value)})
    return extensions, kernel_args, entries


def canonical_yaml(extensions=None, kernel_args=None, meta=None):
    """The text the Image Factory hashes for this schematic."""
    extensions, kernel_args, meta = normalize(extensions, kernel_args, meta)
    pad1, pad2, pad3 = " " * INDENT, " " * (2 * INDENT), " " * (3 * INDENT)
    lines = []
    if kernel_args:
        lines.append(pad1 + "extraKernelArgs:")
        lines += ["%s- %s" % (pad2, scalar(arg, 3 * INDENT)) for arg in kernel_args]
    if meta:
        lines.append(pad1 + "meta:")
        for entry in meta:
            # MetaValue's fields have no omitempty: both are always written.
            lines.append("%s- key: %d" % (pad2, entry["key"]))
            lines.append("%s  value: %s" % (pad2, scalar(entry["value"], 3 * INDENT)))
    if extensions:
        lines += [pad1 + "systemExtensions:", pad2 + "officialExtensions:"]
        lines += ["%s- %s" % (pad3, scalar(name, 4 * INDENT)) for name in extensions]
    if not lines:
        return EMPTY_SCHEMATIC
    return "customization:\n" + "\n".join(lines) + "\n"


def schematic_id(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def request_body(extensions=None, kernel_args=None, meta=None):
    """The JSON document POSTed to the factory's /schematics (only the fields that are set)."""
    extensions, kernel_args, meta = normalize(extensions, kernel_args, meta)
    custom = {}
    if kernel_args:
        custom["extraKernelArgs"] = kernel_args
    if meta:
        custom["meta"] = meta
    if extensions:
        custom["systemExtensions"] = {"officialExtensions": extensions}
    return {"customization": custom}
