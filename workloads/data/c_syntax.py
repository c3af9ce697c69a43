"""C and C++ for the syntax filter: a macro- and preprocessor-aware view that tree-sitter can judge.

``bracket_check`` first (brackets nest and close in the active preprocessor branch, in two views),
then tree-sitter on ``c_view``: comments and directives blanked, one branch of every ``#if`` group
kept (three-valued evaluation), annotation macros blanked while value macros stay, and GNU/C++
corners the grammar lacks rewritten in place. Blanking keeps byte offsets, so error locations stay
true. The policy and its measurements: ``syntax.py`` and ``tests/data/test_syntax_real.py``.
"""

from __future__ import annotations

import re
from collections.abc import Set
from functools import lru_cache

from codekiln.workloads.data.syntax import SyntaxVerdict, _error_spans, _parser, _verdict

# ---------------------------------------------------------------- C / C++: a macro-aware view

# Annotation macros of widely used headers that expand to attributes, visibility or nothing.
KNOWN_C_MACROS = (
    "__THROW",
    "__THROWNL",
    "__NTH",
    "__wur",
    "__BEGIN_DECLS",
    "__END_DECLS",
    "__BEGIN_NAMESPACE_STD",
    "__END_NAMESPACE_STD",
    "__USING_NAMESPACE_STD",
    "__nonnull",
    "__attr_access",
    "__attr_dealloc",
    "__attr_dealloc_free",
    "__fortified_attr_access",
    "__restrict_arr",
    "__REDIRECT",
    "__REDIRECT_NTH",
    "__REDIRECT_NTHNL",
    "__glibc_macro_warning",
    "__errordecl",
    "__warndecl",
    "__flexarr",
    "__asm__",
    "__extension__",
    "__LEAF",
    "__LEAF_ATTR",
    "__MATHCALL",
    "__MATHDECL",
    "_Noreturn",
    "__inline",
    "__always_inline",
    "__extern_inline",
    "__extern_always_inline",
    "__fortify_function",
    "__COLD",
    "__owur",
    "__try",
    "__catch",
    "__INDIRECT_RETURN",
    "__returns_twice",
    "__CFI_ADD_CHECK",
    "local",  # zlib: #define local static
    "z_const",
    "FAR",
    "NEAR",
    "WINAPI",
    "CALLBACK",
    "APIENTRY",
    "EXPORT",
    "Q_OBJECT",
    "Q_GADGET",
    "Q_DECL_EXPORT",
    "Q_DECL_IMPORT",
    "Q_INVOKABLE",
    "Q_SIGNALS",
    "Q_SLOTS",
)
_KNOWN_MACRO_PATTERN = re.compile(
    rb"__attribute_\w+__|__attr_\w+|__glibc_\w+|__\w+_attr__|__BEGIN_\w+|__END_\w+|"
    # libstdc++ / libc++ annotations (their value macros — _GLIBCXX_MOVE, _GLIBCXX_BITSET_BITS_PER_WORD — stay)
    rb"_(?:GLIBCXX|LIBCPP)\w*_(?:CONSTEXPR|NOEXCEPT\w*|VISIBILITY|DEPRECATED\w*|NODISCARD|PURE|CONST|NORETURN|"
    rb"THROW|THROW_EXCEPTION|NOTHROW|ABI_TAG\w*|TXN_SAFE\w*|BEGIN_\w+|END_\w+|USE_NOEXCEPT|INLINE\w*|"
    rb"HIDE_FROM_ABI\w*|TYPE_VIS\w*|TEMPLATE_VIS|EXPORTED_FROM_ABI|ALWAYS_INLINE|VISIBLE|WEAK\w*|"
    rb"EXCLUDE_FROM_EXPLICIT_INSTANTIATION|DEFAULT_ABI_TAG|NAMESPACE_\w+|CLASS_TEMPLATE_VIS|FUNC_VIS|ENUM_VIS|"
    rb"EXTERN_TEMPLATE_TYPE_VIS|STANDALONE_DEBUG|NO_\w+|UNUSED|FALLTHROUGH|REF_QUAL)|"
    rb"_GLIBCXX\d*_(?:CONSTEXPR|DEPRECATED\w*|INIT)|_IsUnused|"
    rb"_GLIBCXX_(?:CONSTEXPR|USE_CONSTEXPR|NOEXCEPT|NOTHROW|VISIBILITY|CONST|PURE|NODISCARD)|"
    rb"__attribute__|__attribute|__declspec|__asm__|__asm|__nonnull|__wur|__THROW\w*|__NTH\w*|__REDIRECT\w*|__LEAF\w*|"
    rb"__complex__|__real__|__imag__|_Complex|\w+__attr__|__[A-Z][A-Z0-9_]*_(?:PURE|CONST|DEPRECATED|ATTR\w*|DECLSPEC|EXPORT|API)__"
)
_MACRO_SHAPE = re.compile(
    r"^(?:__[A-Z0-9_]+|__\w+__|_[A-Z][A-Z0-9_]+|[A-Z][A-Z0-9]*_(?:EXPORT|API|EXTERN|VISIBILITY|INLINE|DEPRECATED\w*|NOEXCEPT|"
    r"NORETURN|HIDDEN|PUBLIC|LOCAL|ATTR\w*|DECL\w*|CALL|CDECL|STDCALL|NODISCARD|CONSTEXPR|UNUSED|FORCEINLINE|"
    r"PURE|CONST|PRINTF\w*|FORMAT\w*|ALIGN\w*|PACKED|WARN\w*|MAYBE_UNUSED|FALLTHROUGH|THREAD_LOCAL|BEGIN\w*|END\w*)|"
    r"[A-Z][A-Z0-9_]{2,})$"
)
_C_KEYWORDS = frozenset(
    [
        "auto",
        "break",
        "case",
        "char",
        "const",
        "continue",
        "default",
        "do",
        "double",
        "else",
        "enum",
        "extern",
        "float",
        "for",
        "goto",
        "if",
        "inline",
        "int",
        "long",
        "register",
        "restrict",
        "return",
        "short",
        "signed",
        "sizeof",
        "static",
        "struct",
        "switch",
        "typedef",
        "union",
        "unsigned",
        "void",
        "volatile",
        "while",
        "_Bool",
        "_Complex",
        "_Atomic",
        "_Alignas",
        "_Alignof",
        "_Generic",
        "_Static_assert",
        "_Thread_local",
        "bool",
        "class",
        "namespace",
        "template",
        "typename",
        "public",
        "private",
        "protected",
        "virtual",
        "operator",
        "new",
        "delete",
        "this",
        "throw",
        "try",
        "catch",
        "using",
        "friend",
        "explicit",
        "mutable",
        "constexpr",
        "decltype",
        "noexcept",
        "nullptr",
        "static_assert",
        "thread_local",
        "alignas",
        "alignof",
        "consteval",
        "constinit",
        "concept",
        "requires",
        "co_await",
        "co_return",
        "co_yield",
        "override",
        "final",
        "__attribute__",
        "__declspec",
        "NULL",
        "TRUE",
        "FALSE",
        "EOF",
    ]
)
_STORAGE_WORDS = frozenset(
    ["static", "extern", "inline", "const", "volatile", "register", "__inline", "__inline__", "__forceinline"]
)
_DIRECTIVE = re.compile(rb"^[ \t]*#[ \t]*(\w*)(.*)$")
_DEFINE = re.compile(rb"^[ \t]*#[ \t]*define[ \t]+([A-Za-z_]\w*)(?![\w(])[ \t]*(.*)$")
_IDENT = re.compile(rb"[A-Za-z_]\w*")
_CPLUSPLUS = re.compile(rb"__cplusplus")


# comments, string and character literals (C++ raw strings, `L'x'`/`u8"x"` prefixes; `1'000` is a number)
_C_LEXEME = re.compile(
    rb"//[^\n]*|/\*.*?(?:\*/|\Z)|R\"([^()\\ \n]{0,16})\(.*?\)\1\"|"
    rb"(?<![\w'])(?:u8|[LuU])?\"(?:\\.|[^\"\\\n])*\"|(?<![\w'])(?:u8|[LuU])?'(?:\\.|[^'\\\n])*'",
    re.S,
)


def _blank(buf: bytearray, start: int, end: int) -> None:
    """Replace ``buf[start:end]`` by spaces, keeping newlines (so offsets and lines stay true)."""
    for i in range(start, end):
        if buf[i] not in (10, 13):
            buf[i] = 32


_COND_TOKEN = re.compile(
    rb"defined\s*\(\s*(\w+)\s*\)|defined\s+(\w+)|(\|\||&&|[!()])|(\w+)\s*(>=|<=|==|!=|>|<)\s*(\w+)|(\w+)|(\S)"
)


def _condition(kind: bytes, rest: bytes, cpp: bool, defined: Set[bytes] = frozenset()) -> bool | None:
    """Truth of an ``#if``-family condition when we can tell, else None (three-valued ``!``/``&&``/``||``).

    Known: ``__cplusplus`` (by language; ``__cplusplus >= N`` true for C++, ``< N`` false — a
    current compiler), ``0``/``1``, and ``defined X`` for macros the file defined above.
    """
    rest = rest.split(b"//")[0].split(b"/*")[0].strip()
    if kind == b"ifdef":
        return _atom_defined(rest.split()[0] if rest.split() else b"", cpp, defined)
    if kind == b"ifndef":
        v = _atom_defined(rest.split()[0] if rest.split() else b"", cpp, defined)
        return None if v is None else not v
    tokens: list[object] = []
    for m in _COND_TOKEN.finditer(rest):
        if m.group(1) or m.group(2):
            tokens.append(_atom_defined(m.group(1) or m.group(2), cpp, defined))
        elif m.group(3):
            tokens.append(m.group(3))
        elif m.group(4):
            tokens.append(_compare(m.group(4), m.group(5), m.group(6), cpp))
        elif m.group(7):
            w = m.group(7)
            tokens.append(cpp if b"CPLUSPLUS" in w.upper() else False if w == b"0" else True if w == b"1" else None)
        else:
            return None  # arithmetic etc.: unknown
    try:
        value, pos = _cond_or(tokens, 0)
    except (IndexError, TypeError):
        return None
    return value if pos == len(tokens) else None


def _atom_defined(name: bytes, cpp: bool, defined: Set[bytes]) -> bool | None:
    if name == b"__cplusplus":
        return cpp
    return True if name in defined else None


def _compare(left: bytes, op: bytes, right: bytes, cpp: bool) -> bool | None:
    if left == b"__cplusplus":
        if not cpp:
            return False
        return op in (b">", b">=", b"!=")
    if left.isdigit() and right.isdigit():
        a, b = int(left), int(right)
        return {b">": a > b, b">=": a >= b, b"<": a < b, b"<=": a <= b, b"==": a == b, b"!=": a != b}[op]
    return None


def _cond_or(t: list, i: int) -> tuple[bool | None, int]:
    v, i = _cond_and(t, i)
    while i < len(t) and t[i] == b"||":
        w, i = _cond_and(t, i + 1)
        v = True if (v is True or w is True) else (False if (v is False and w is False) else None)
    return v, i


def _cond_and(t: list, i: int) -> tuple[bool | None, int]:
    v, i = _cond_not(t, i)
    while i < len(t) and t[i] == b"&&":
        w, i = _cond_not(t, i + 1)
        v = False if (v is False or w is False) else (True if (v is True and w is True) else None)
    return v, i


def _cond_not(t: list, i: int) -> tuple[bool | None, int]:
    if t[i] == b"!":
        v, i = _cond_not(t, i + 1)
        return (None if v is None else not v), i
    if t[i] == b"(":
        v, i = _cond_or(t, i + 1)
        if t[i] != b")":
            raise TypeError
        return v, i + 1
    if isinstance(t[i], bytes):
        raise TypeError
    return t[i], i + 1


def _directive_lines(data: bytearray) -> list[tuple[int, int, re.Match | None]]:
    """(start, end, directive match or None) of every logical line (``\\`` continuations joined)."""
    out = []
    pos, n = 0, len(data)
    while pos < n:
        end = data.find(b"\n", pos)
        end = n if end < 0 else end
        while end < n and end > pos and data[end - 1 - (data[end - 1] == 13)] == 92:  # `\` continuation
            nxt = data.find(b"\n", end + 1)
            end = n if nxt < 0 else nxt
        line = bytes(data[pos:end])
        out.append((pos, end, _DIRECTIVE.match(line.split(b"\n", 1)[0])))
        pos = end + 1
    return out


def c_view(text: str, cpp: bool, prefer_else: bool = False) -> tuple[bytes, set[bytes]]:
    """The bytes tree-sitter sees for C/C++, and the object-like macros the file defines as annotations.

    Comments and directives are blanked; in each ``#if`` group one branch is kept: a decidable
    condition picks it, else the first branch (``prefer_else``: the last one, the configuration
    a build without the optional macros compiles); inactive branches are blanked.

    Args:
        text: the source file.
        cpp: evaluate ``__cplusplus`` as C++.
        prefer_else: take the last branch of a group whose condition is unknown.
    """
    view, macros = _c_view(text, cpp, prefer_else)
    return view, set(macros)


@lru_cache(maxsize=8)  # the bracket check and the parse of one file share the views
def _c_view(text: str, cpp: bool, prefer_else: bool) -> tuple[bytes, frozenset[bytes]]:
    data = bytearray(text.encode("utf-8", "surrogateescape"))
    for m in _C_LEXEME.finditer(bytes(data)):  # comments go (a `*/` must not read as an operator)
        if m.group(0)[:1] == b"/":
            _blank(data, m.start(), m.end())
    lines = _directive_lines(data)
    later_branch: set[int] = set()  # line indices of #if/#elif followed by another branch of the group
    open_groups: list[int] = []
    for k, (_, _, m) in enumerate(lines):
        kind = m.group(1) if m else None
        if kind in (b"if", b"ifdef", b"ifndef"):
            open_groups.append(k)
        elif kind in (b"elif", b"else") and open_groups:
            later_branch.add(open_groups[-1])
            open_groups[-1] = k
        elif kind == b"endif" and open_groups:
            open_groups.pop()
    annotation_macros: set[bytes] = set()
    defined: set[bytes] = set()
    # stack of [this branch active, some branch taken, parent active]
    stack: list[list[bool]] = []
    active = True
    for k, (pos, end, m) in enumerate(lines):
        if m:
            line = bytes(data[pos:end])
            kind, rest = m.group(1), m.group(2)
            guess = not (prefer_else and k in later_branch)
            if kind in (b"if", b"ifdef", b"ifndef"):
                cond = _condition(kind, rest, cpp, defined)
                this = cond if cond is not None else guess
                stack.append([active and this, this, active])
                active = active and this
            elif kind == b"elif" and stack:
                top = stack[-1]
                cond = _condition(b"if", rest, cpp, defined)
                this = (not top[1]) and (cond if cond is not None else (prefer_else and guess))
                top[0], top[1] = top[2] and this, top[1] or this
                active = top[0]
            elif kind == b"else" and stack:
                top = stack[-1]
                this = not top[1]
                top[0], top[1] = top[2] and this, True
                active = top[0]
            elif kind == b"endif" and stack:
                active = stack.pop()[2]
            elif kind == b"define" and active:
                d = _DEFINE.match(line.replace(b"\\\n", b" "))
                name = _IDENT.match(rest.strip())
                if name:
                    defined.add(name.group(0))
                if d:
                    body = set(d.group(2).split(b"//")[0].split())
                    if not body or body <= {w.encode() for w in _STORAGE_WORDS}:
                        annotation_macros.add(d.group(1))
            elif kind == b"undef" and active:
                name = _IDENT.match(rest.strip())
                if name:
                    defined.discard(name.group(0))
            _blank(data, pos, end)
        elif not active:
            _blank(data, pos, end)
    return bytes(data), frozenset(annotation_macros)


def _skip_args(data: bytearray, i: int) -> int:
    """If ``data[i:]`` (after spaces) opens ``(``, the index after its balanced ``)``; else ``i``."""
    j = i
    while j < len(data) and data[j] in (32, 9, 10, 13):
        j += 1
    if j >= len(data) or data[j] != 40:
        return i
    depth = 0
    for k in range(j, min(len(data), j + 4000)):
        if data[k] == 40:
            depth += 1
        elif data[k] == 41:
            depth -= 1
            if depth == 0:
                return k + 1
    return i


_LONE_MACRO_LINE = re.compile(
    rb"^[ \t]*([A-Z_][A-Z0-9_]{2,}|[A-Z][A-Z0-9]*_[A-Za-z0-9_]+)[ \t]*(\([^\n;{}]*\))?"
    rb"[ \t]*;?[ \t]*$",
    re.M,
)
# the same, its arguments over several lines: `_DEFINE_SPEC(2, helper, _Tp _Cp::*,\n   !is_function<_Tp>::value)`
_LONE_MACRO_START = re.compile(rb"^[ \t]*_?[A-Z][A-Z0-9_]{2,}[ \t]*(?=\()", re.M)


_TYPE_WORDS = (
    rb"(?:void|int|char|short|long|unsigned|signed|float|double|const|static|extern|inline|struct|enum|union|"
    rb"class|bool|virtual|explicit|typedef)\b"
)
# an ALL-CAPS word starting a declaration and followed by a type (`U_CAPI int32_t f(`, `OSSL_DEPRECATEDIN_3_0 void`)
_LEADING_MACRO = re.compile(
    rb"(?:^|(?<=[;{}(,]))[ \t]*(_{0,2}[A-Z][A-Z0-9_]{2,})\b(?=[ \t\n]+(?:[A-Za-z_]\w*[ \t\n]+[*&]*[ \t\n]*[A-Za-z_]|"
    + _TYPE_WORDS
    + rb"))",
    re.M,
)
# an ALL-CAPS word between a return type and the function name (`int32_t U_EXPORT2 f(`, `char * SDLCALL f(`)
_MIDDLE_MACRO = re.compile(rb"(?<=[\w*&])[ \t\n]+([A-Z][A-Z0-9_]{2,})(?=[ \t\n]+[A-Za-z_]\w*[ \t\n]*\()")
# `class V8_EXPORT Value : …`, `class U_COMMON_API Appendable {`
_CLASS_MACRO = re.compile(
    rb"\b(?:class|struct|union)[ \t\n]+([A-Z][A-Z0-9_]{2,})(?=[ \t\n]+[A-Za-z_]\w*[ \t\n]*(?:[:{]|final\b))"
)


_ANNOTATION_ONLY = re.compile(
    rb"__attribute__|__attribute|__extension__|__asm__|__asm|__declspec|__restrict\w*|__complex__|__real__|__imag__|"
    rb"_Complex|"
    rb"_IsUnused"
)
_EXPLICIT = frozenset(w.encode() for w in KNOWN_C_MACROS if w != "local")  # annotations even after `(`, `,`
_ACCESS = frozenset([b"public", b"private", b"protected"])
_EXPR_WORDS = frozenset([b"return", b"case", b"sizeof", b"throw", b"co_return", b"co_yield"])


def _prev_significant(data: bytes | bytearray, i: int) -> int:
    """Index of the last non-blank byte before ``i`` (-1 when none)."""
    j = i - 1
    while j >= 0 and data[j] in (32, 9, 10, 13):
        j -= 1
    return j


def _word_before(data: bytes | bytearray, j: int) -> bytes:
    """The identifier that ends at index ``j`` (inclusive), or b""."""
    k = j
    while k >= 0 and (data[k] == 95 or 48 <= data[k] <= 57 or 65 <= data[k] <= 90 or 97 <= data[k] <= 122):
        k -= 1
    return bytes(data[k + 1 : j + 1])


def _in_expression(data: bytes | bytearray, start: int) -> bool:
    """True when the identifier at ``start`` is an operand (after ``=``, ``,``, ``(``, ``return`` ...).

    A macro there is a value (``__shift / _GLIBCXX_BITSET_BITS_PER_WORD``,
    ``= _GLIBCXX_MOVE(__a)``), not an annotation, and must stay.
    """
    j = _prev_significant(data, start)
    if j < 0:
        return False
    c = data[j]
    if c in b"=,(<?[+-/%!~|^":
        return True
    if c == 58:  # `:` — `::` and `?:` are expressions; `public:` is not
        if j > 0 and data[j - 1] == 58:
            return True
        return _word_before(data, _prev_significant(data, j)) not in _ACCESS
    if c == 38 and j > 0 and data[j - 1] == 38:  # `&&` (not `>>`: it closes templates)
        return True
    return _word_before(data, j) in _EXPR_WORDS


def _args_end(data: bytes | bytearray, open_at: int, limit: int = 4000) -> int:
    """Index after the ``)`` that closes the ``(`` at ``open_at``; -1 if unbalanced within ``limit``."""
    depth = 0
    for k in range(open_at, min(len(data), open_at + limit)):
        if data[k] == 40:
            depth += 1
        elif data[k] == 41:
            depth -= 1
            if depth == 0:
                return k + 1
    return -1


def _redirect(data: bytearray, start: int, end: int) -> bool:
    """glibc's ``__REDIRECT (name, (proto), alias)`` → ``name (proto)`` (the declaration it stands for)."""
    j = end
    while j < len(data) and data[j] in (32, 9, 10, 13):
        j += 1
    if j >= len(data) or data[j] != 40:
        return False
    close = _args_end(data, j)
    if close < 0:
        return False
    commas, depth = [], 0
    for k in range(j, close):
        if data[k] in (40, 91, 123):
            depth += 1
        elif data[k] in (41, 93, 125):
            depth -= 1
        elif data[k] == 44 and depth == 1:
            commas.append(k)
    if len(commas) != 2:
        return False
    _blank(data, start, j + 1)
    _blank(data, commas[0], commas[0] + 1)
    _blank(data, commas[1], close)
    return True


_CAPS = rb"_{0,2}[A-Z][A-Z0-9_]{2,}\b"
# a name that says it is an annotation (for the riskier rules below)
_ANNOTATION_NAME = re.compile(
    rb"ATTR|DEPRECATED|ALIGN|PACKED|UNUSED|CONST|PURE|WARN|NORETURN|FORMAT|PRINTF|MALLOC|NONNULL|VISIBILITY|"
    rb"EXPORT|API|SENTINEL|NOTHROW|NOEXCEPT|INLINE|EXTERN|DECL"
)
# `[[nodiscard]]`, `[[unlikely]]`: attributes are never needed for the syntax (and the grammar trips on some)
_ATTRIBUTE = re.compile(rb"\[\[[^\[\]\n]*\]\]")
# `f(...) = delete;` / `= default;` outside a class body
_DELETED = re.compile(rb"(?<=[)\w&])[ \t\n]*(=[ \t\n]*(?:delete|default))(?=[ \t\n]*;)")
# explicit instantiation (declaration): `extern template class allocator<char>;`
_INSTANTIATION = re.compile(rb"\b(?:(extern)[ \t\n]+)?(template)(?=[ \t\n]+(?:class|struct|union)\b[^;{()]*;)")
# `typename` in an expression: `return typename X<T>::y();`, `f(a, typename T::tag{})`
_EXPR_TYPENAME = re.compile(rb"\b(typename)(?=[ \t\n]+[\w:<>, \t\n]*::[ \t\n]*\w+[ \t\n]*[({])")
# an unnamed parameter with a default: `const void* = 0` (the space becomes a one-letter name)
_UNNAMED_DEFAULT = re.compile(rb"[\w>)][ \t]*[*&]{1,2}( )(?==(?!=))")
# a pointer or reference default template argument: `typename _Pointer = _Tp*,`
# `typename _Init = const T`: the grammar wants no cv-qualifier in a default template argument
_DEFAULT_CONST = re.compile(rb"\b(?:typename|class)[ \t\n]+\w+[ \t\n]*=[ \t\n]*(const)\b")
_DEFAULT_PTR = re.compile(rb"=[ \t]*(?:const[ \t]+)?[\w:<>]+?[ \t]*([*&]+)(?=[ \t\n]*[,>])")
# pointer-to-member access `(__p->*_M_f)()`, `(obj.*pm)`: the grammar lacks `->*` / `.*`
_MEMBER_ACCESS = re.compile(rb"(?:->|\.)(\*)(?=[ \t]*[A-Za-z_(])")
# pack expansion of a braced list `{a, b}...`, a C varargs ellipsis after a pack `_Args......`,
# a qualified destructor call `p->~Node<T>()`: grammar gaps
_PACK_CORNERS = re.compile(rb"(?<=\})[ \t]*(\.\.\.)|\.\.\.(\.\.\.)|(?:->|\.)[ \t]*(~)(?=[A-Za-z_]\w*[ \t]*<)")
# lowercase annotation macros before a type: `static ossl_unused ossl_inline int f(`, `ossl_noreturn void f(`
_LOWER_LEADING = re.compile(
    rb"(?:^|(?<=[;{}])|\b(?:static|extern|inline)\b)[ \t]*((?:[a-z_]\w*[ \t]+){1,2})"
    rb"(?=(?:void|int|char|short|long|unsigned|signed|float|double|_Bool|bool|struct|enum|union)\b)",
    re.M,
)
# `__decltype(x)`: GNU spelling of decltype
_GNU_DECLTYPE = re.compile(rb"\b(__)decltype\b")
# `_Pred __pred = {}`: an empty-braced default argument (becomes `= 0`)
_BRACED_DEFAULT = re.compile(rb"=[ \t]*(\{)[ \t]*(\})(?=[ \t\n]*[,)])")
# `unsigned _M_msb:1 = 0;`: a bit-field's default member initializer
_BITFIELD_INIT = re.compile(rb"(?<=[\w\s]):[ \t]*\d+[ \t]*(=[^;{}\n]*)(?=;)")
# an operator function called by name in an expression: `&(operator*())`, `X::operator=(r)`, `operator~()`
_OPERATOR_CALL = re.compile(rb"\boperator[ \t]*([-+*/%^&|~!=<>]{1,3}|\(\)|\[\])(?=[ \t]*\()")
# trait builtins with type arguments: `__is_same(_Tp, long double)`, `__builtin_bit_cast(int64_t, v)`
_TYPE_BUILTIN = re.compile(
    rb"\b(?:typeid|__is_\w+|__has_\w+|__builtin_bit_cast|__builtin_offsetof|__builtin_va_arg|"
    rb"__builtin_types_compatible_p|__reference_\w+)[ \t]*(?=\()"
)
# `STATIC_CAST(ITEM*)(0)`: a cast macro
_CAST_MACRO = re.compile(rb"\b([A-Z][A-Z0-9_]*CAST)[ \t]*(?=\([^()\n]*\)[ \t]*\()")
# a macro that wraps the function name: `NCURSES_SP_NAME(tigetstr) (SCREEN*, …)`
_WRAP_NAME = re.compile(rb"\b([A-Z][A-Z0-9_]{2,}[ \t]*\()[ \t]*[A-Za-z_]\w*[ \t]*(\))(?=[ \t]*\()")
# a macro that yields the return type: `extern NCURSES_EXPORT(int) f (…)`, `PR_EXTERN(void) f(…)`
_TYPE_MACRO = re.compile(
    rb"(?:^|(?<=[;{}])|\b(?:extern|static)\b)[ \t]*([A-Z][A-Z0-9_]{2,}[ \t]*\()[^()\n;{}]*(\))"
    rb"(?=[ \t]*[*&]*[ \t]*[A-Za-z_]\w*[ \t]*\(|[ \t]*\n[ \t]*[*&]+[ \t]*[A-Za-z_]\w*[ \t]*\()|"
    rb"\btypedef[ \t]+([A-Z][A-Z0-9_]*[ \t]*\()[^()\n;]*(\))(?=[ \t]*[A-Za-z_]\w*[ \t]*;)|"
    rb"\b([A-Z][A-Z0-9_]*_OF[ \t]*\()[^()\n;]*(\))",  # STACK_OF(X509), LHASH_OF(T): a type
    re.M,
)
# pointer to member: `_Ret (_Tp::*_M_f)();`
_MEMBER_PTR = re.compile(rb"(?<=[\w>(])[ \t]*((?:[A-Za-z_]\w*(?:<[^<>()\n]*>)?::)+)\*")
# an ALL-CAPS macro after a function declarator on the same line: `) U_NOEXCEPT;`, `) THROW2(a, b) {`
_TRAILING_MACRO = re.compile(
    rb"\)[ \t]*(?:(?:const|noexcept|override|final|volatile)[ \t]+)*(" + _CAPS + rb")[ \t]*"
    rb"(\([^\n;{}()]*(?:\([^\n;{}()]*\)[^\n;{}()]*)*\))?"
    rb"(?=[ \t]*(?:[;{=:,)]|\n|//|/\*|" + _CAPS + rb"|const\b|override\b|noexcept\b|final\b))"
)
# … or on the next line when its name says it is an annotation: `int flags)\n    G_GNUC_DEPRECATED;`
_NEXT_LINE_MACRO = re.compile(rb"\)[ \t]*\n[ \t]*(" + _CAPS + rb")[ \t]*(\([^\n;{}()]*\))?(?=[ \t]*[;{])")
# an ALL-CAPS macro after a parameter name: `int flags G_GNUC_UNUSED)`
_PARAM_MACRO = re.compile(rb"(?<=[\w])([ \t]+)(" + _CAPS + rb")(?=[ \t]*[),;=])")
# `class U_I18N_API CollationElementIterator U_FINAL : public UObject`
_CLASS_TRAIL = re.compile(rb"\b(?:class|struct)[ \t\n]+[A-Za-z_]\w*[ \t\n]+(" + _CAPS + rb")(?=[ \t\n]*[:{])")
# `static GPG_ERR_INLINE gcry_error_t\ngcry_err_make (`
_STORAGE_MACRO = re.compile(
    rb"\b(?:static|extern|inline)[ \t\n]+("
    + _CAPS
    + rb")(?=[ \t\n]+(?:[A-Za-z_]\w*[ \t\n*&]+)+[A-Za-z_]\w*[ \t\n]*[(;=\[,])"
)
_LONE_REQUIRES = re.compile(rb"__glibcxx_(?:function|class)_requires\w*")


def _blank_macros(data: bytearray, names: set[bytes], cpp: bool = True) -> None:
    """Blank annotation macros (with their arguments), GNU/C++ corners the grammar misses, and
    lines that are only a macro call. A macro in an operand position is a value and stays."""
    for pattern in (_ATTRIBUTE, _WRAP_NAME, _TYPE_MACRO, _CAST_MACRO, _DELETED, _MEMBER_PTR, _MEMBER_ACCESS):
        if not cpp and pattern in (_DELETED, _MEMBER_PTR, _MEMBER_ACCESS):
            continue
        for m in pattern.finditer(bytes(data)):
            if m.lastindex is None:
                _blank(data, m.start(), m.end())
            for g in range(1, (m.lastindex or 0) + 1):
                if m.start(g) >= 0:
                    _blank(data, m.start(g), m.end(g))
    for pattern in (_DEFAULT_PTR, _DEFAULT_CONST, _INSTANTIATION, _EXPR_TYPENAME, _PACK_CORNERS):
        if cpp:
            for m in pattern.finditer(bytes(data)):
                for g in range(1, (m.lastindex or 0) + 1):
                    if m.start(g) >= 0:
                        _blank(data, m.start(g), m.end(g))
    for m in _LOWER_LEADING.finditer(bytes(data)):
        words = m.group(1).split()
        if not any(w.decode() in _C_KEYWORDS for w in words):
            _blank(data, m.start(1), m.end(1))
    for m in _GNU_DECLTYPE.finditer(bytes(data)):
        _blank(data, m.start(1), m.end(1))
    for m in _TYPE_BUILTIN.finditer(bytes(data)):  # keep the call, drop the (type) arguments
        close = _args_end(data, m.end())
        if close > 0:
            _blank(data, m.end() + 1, close - 1)
    if cpp:
        for m in _BRACED_DEFAULT.finditer(bytes(data)):
            data[m.start(1)] = 48  # `0`
            data[m.start(2)] = 32
        for m in _BITFIELD_INIT.finditer(bytes(data)):
            _blank(data, m.start(1), m.end(1))
        snap = bytes(data)
        for m in _OPERATOR_CALL.finditer(snap):
            j = _prev_significant(snap, m.start())
            if j >= 0 and (
                snap[j] in b"(&,=!"
                or snap[j - 1 : j + 1] in (b"::", b"->")
                or snap[j] == 46
                or _word_before(snap, j) in _EXPR_WORDS
            ):
                for k in range(m.start(1), m.end(1)):
                    data[k] = 95  # `operator*(` → `operator_(`: a call by name
    for m in _UNNAMED_DEFAULT.finditer(bytes(data)):
        if cpp:
            data[m.start(1)] = 95  # `_`
    for m in _CLASS_TRAIL.finditer(bytes(data)):
        if m.group(1).decode() not in _C_KEYWORDS:
            _blank(data, m.start(1), m.end(1))
    snapshot = bytes(data)
    for pattern in (_LEADING_MACRO, _MIDDLE_MACRO, _CLASS_MACRO, _STORAGE_MACRO):
        for m in pattern.finditer(snapshot):
            if m.group(1).decode() not in _C_KEYWORDS:
                _blank(data, m.start(1), m.end(1))
    for m in _TRAILING_MACRO.finditer(snapshot):
        open_at = _open_paren(snapshot, m.start())
        if open_at < 0 or m.group(1).decode() in _C_KEYWORDS:
            continue
        before = _word_before(snapshot, _prev_significant(snapshot, open_at))
        if not before or before in _EXPR_WORDS or before.decode() in _C_KEYWORDS and before != b"operator":
            continue  # `(size_t) SIZE_MAX`, `if (x) ABORT()`: not a declarator
        if _typedef_name(snapshot, m.start(1)):
            continue
        _blank(data, m.start(1), m.end(2) if m.group(2) else m.end(1))
    for m in _NEXT_LINE_MACRO.finditer(snapshot):
        if _ANNOTATION_NAME.search(m.group(1)):
            _blank(data, m.start(1), m.end(2) if m.group(2) else m.end(1))
    for m in _PARAM_MACRO.finditer(snapshot):
        prev = _word_before(snapshot, m.start(1) - 1)
        if _typedef_name(snapshot, m.start(2)):  # `long __align __LOCK_ALIGNMENT;`, not `typedef T NAME;`
            continue
        if prev and prev.decode() not in _C_KEYWORDS and m.group(2).decode() not in _C_KEYWORDS:
            _blank(data, m.start(2), m.end(2))
    snapshot = bytes(data)
    for m in _IDENT.finditer(snapshot):
        word = m.group(0)
        if word.startswith(b"__REDIRECT") and _redirect(data, m.start(), m.end()):
            continue
        if word == b"__NTH":  # `__NTH (f (args))` wraps a declarator: keep what it wraps
            j = _next_significant(data, m.end())
            close = _args_end(data, j) if j < len(data) and data[j] == 40 else -1
            if close > 0:
                _blank(data, m.start(), j + 1)
                _blank(data, close - 1, close)
                continue
        if word in names or _KNOWN_MACRO_PATTERN.fullmatch(word):
            explicit = word in _EXPLICIT and snapshot[_prev_significant(snapshot, m.start())] in b"(,"
            if not (_ANNOTATION_ONLY.fullmatch(word) or explicit) and _in_expression(snapshot, m.start()):
                continue
            j = _prev_significant(snapshot, m.start())
            if _word_before(snapshot, j) in (b"if", b"while"):  # `if _GLIBCXX17_CONSTEXPR (cond)`
                _blank(data, m.start(), m.end())
            else:
                _blank(data, m.start(), _skip_args(data, m.end()))
        elif _in_expression(snapshot, m.start()) and re.fullmatch(_CAPS, word):  # `= _M(T, const U&)`: type arguments
            j = _next_significant(snapshot, m.end())
            close = _args_end(snapshot, j) if j < len(snapshot) and snapshot[j] == 40 else -1
            if close > 0 and re.search(rb"\bconst\b|[*&][ \t]*[,)]", snapshot[j:close]):
                _blank(data, j + 1, close - 1)
        elif re.fullmatch(_CAPS, word) and not _in_expression(snapshot, m.start()):
            j = _next_significant(snapshot, m.end())
            close = _args_end(snapshot, j) if j < len(snapshot) and snapshot[j] == 40 else -1
            nxt = (
                snapshot[_next_significant(snapshot, close) : _next_significant(snapshot, close) + 1]
                if close > 0
                else b""
            )
            # `_GLIBCXX_DEBUG_ONLY(check();)`, `{ PB_DS_ASSERT_VALID((*this)) }`: statement macros
            if close > 0 and (b";" in snapshot[j:close] or nxt == b"}"):
                _blank(data, m.start(), close)
        elif _LONE_REQUIRES.fullmatch(word):  # libstdc++ concept checks: a call with no `;`
            end = _skip_args(data, m.end())
            nxt = _prev_significant(snapshot, _next_significant(snapshot, end) + 1)
            if end > m.end() and snapshot[nxt : nxt + 1] != b";":
                _blank(data, m.start(), end)
    for m in _LONE_MACRO_START.finditer(snapshot):  # a macro call alone over several lines, no `;`
        close = _args_end(snapshot, m.end())
        if close < 0 or b"\n" not in snapshot[m.end() : close]:
            continue
        eol = snapshot.find(b"\n", close)
        rest = snapshot[close : eol if eol >= 0 else len(snapshot)].strip()
        j = _prev_significant(snapshot, m.start())
        nxt = snapshot[_next_significant(snapshot, close) : _next_significant(snapshot, close) + 1]
        if not rest and (j < 0 or snapshot[j] in b";{}") and nxt not in (b"{", b":"):  # not a constructor
            _blank(data, m.start(), close)
    for m in _LONE_MACRO_LINE.finditer(snapshot):  # `PR_BEGIN_EXTERN_C`, `Q_OBJECT`, `DECLARE_X(a, b);`
        before = bytes(data[max(0, m.start() - 400) : m.start()]).rstrip()
        args = m.group(2) or b""
        if args.count(b"(") != args.count(b")") or (not args and m.group(0).rstrip().endswith(b";")):
            continue  # `} IRCAS;` ends a typedef
        nxt = snapshot[_next_significant(snapshot, m.end()) : _next_significant(snapshot, m.end()) + 1]
        if args and not m.group(0).rstrip().endswith(b";") and nxt in (b"{", b":"):
            continue  # `FOO(int a)\n{` / `: x(a)`: a function or constructor, not a macro line
        if m.group(1).decode() not in _C_KEYWORDS and (not before or before[-1:] in (b";", b"{", b"}", b"/")):
            _blank(data, m.start(1), m.end())


def _typedef_name(data: bytes, start: int) -> bool:
    """True when the word at ``start`` is the name a ``typedef`` declares (``typedef struct x X;``,
    ``typedef STACK_OF(T) NAME;``), not an annotation after it (``typedef struct m *M ATTR;``)."""
    stmt = max(data.rfind(b";", 0, start), data.rfind(b"{", 0, start), data.rfind(b"}", 0, start))
    if not re.search(rb"\btypedef\b", data[stmt + 1 : start]):
        return False
    j = _prev_significant(data, start)
    prev = _word_before(data, j)
    if not prev or prev.decode() in _C_KEYWORDS:
        return True
    before = _word_before(data, _prev_significant(data, j - len(prev)))
    return before in (b"typedef", b"struct", b"union", b"enum", b"class")  # else ``prev`` is the name


def _next_significant(data: bytes | bytearray, i: int) -> int:
    """Index of the first non-blank byte at or after ``i`` (len(data) when none)."""
    while i < len(data) and data[i] in (32, 9, 10, 13):
        i += 1
    return i


def _open_paren(data: bytes, close_at: int, limit: int = 2000) -> int:
    """Index of the ``(`` matching the ``)`` at ``close_at``; -1 when not found within ``limit``."""
    depth = 0
    for k in range(close_at, max(-1, close_at - limit), -1):
        if data[k] == 41:
            depth += 1
        elif data[k] == 40:
            depth -= 1
            if depth == 0:
                return k
    return -1


def _macro_only(data: bytes, start: int, end: int) -> tuple[int, int] | None:
    """The span of a lone macro-like identifier (with optional arguments) inside an error node."""
    chunk = data[start:end]
    m = re.match(rb"\s*([A-Za-z_]\w*)", chunk)
    if not m:
        return None
    word = m.group(1).decode()
    if word in _C_KEYWORDS or not _MACRO_SHAPE.match(word):
        return None
    after = _skip_args(bytearray(data), start + m.end())
    rest = data[after:end].strip()
    if rest and not _MACRO_SHAPE.match(rest.decode("utf-8", "replace")):
        return None
    return start + m.start(1), (after if not rest else end)


def _last_ident(data: bytes, lo: int, hi: int) -> re.Match | None:
    """The last identifier in ``data[lo:hi]``."""
    last = None
    for last in _IDENT.finditer(data, max(0, lo), hi):  # noqa: B007
        pass
    return last


_BRACKETS = re.compile(rb"[{}()\[\]]")
_PAIR = {ord("}"): ord("{"), ord(")"): ord("("), ord("]"): ord("[")}
_DEFINE_BODY = re.compile(
    rb"^[ \t]*#[ \t]*define[ \t]+[A-Za-z_]\w*"
    rb"(?:\((?:[ \t]*(?:[A-Za-z_]\w*|\.\.\.)[ \t]*,)*[ \t]*(?:[A-Za-z_]\w*(?:[ \t]*\.\.\.)?|\.\.\.)?[ \t]*\))?"
    rb"((?:\\\r?\n|[^\n])*)",
    re.M,
)


def _code_only(data: bytes) -> bytes:
    """``data`` with comments and string/character literals blanked (offsets kept)."""
    buf = bytearray(data)
    for m in _C_LEXEME.finditer(data):
        _blank(buf, m.start(), m.end())
    return bytes(buf)


def bracket_check(text: str, language: str) -> SyntaxVerdict:
    """Brackets of the active preprocessor branch nest and close; ``#define`` bodies balance ``()``.

    The grammar recovers from a lost ``}`` or ``)`` in ways that can look valid; the compiler
    does not, and neither does this count.

    Args:
        text: the source file.
        language: ``c`` or ``cpp`` (how ``__cplusplus`` branches are taken).
    """
    for prefer_else in (False, True):
        verdict = _nesting(_code_only(c_view(text, language == "cpp", prefer_else)[0]))
        if not verdict.ok:
            return verdict
    raw = text.encode("utf-8", "surrogateescape")
    brace_net, first_unbalanced = 0, -1
    for m in _DEFINE_BODY.finditer(raw):
        body = _code_only(m.group(1))
        depth = 0
        for c in body:
            depth += (c == 40) - (c == 41)
            if depth < 0:
                break
        if depth != 0:
            return _bracket_error(raw, m.start(), "unbalanced '()' in a #define")
        net = body.count(b"{") - body.count(b"}")  # push/pop macro pairs cancel out over the file
        brace_net += net
        if net and 123 in body and 125 in body and first_unbalanced < 0:  # not `#define BEGIN {` alone
            first_unbalanced = m.start()
    if brace_net and first_unbalanced >= 0:
        return _bracket_error(raw, first_unbalanced, "unbalanced '{}' across #define bodies")
    return SyntaxVerdict(True)


def _nesting(view: bytes) -> SyntaxVerdict:
    stack: list[tuple[int, int]] = []
    for m in _BRACKETS.finditer(view):
        c = view[m.start()]
        if c in (123, 40, 91):
            stack.append((c, m.start()))
        elif not stack or stack[-1][0] != _PAIR[c]:
            return _bracket_error(view, m.start(), f"unmatched {chr(c)!r}")
        else:
            stack.pop()
    if stack:
        return _bracket_error(view, stack[-1][1], f"unclosed {chr(stack[-1][0])!r}")
    return SyntaxVerdict(True)


def _bracket_error(data: bytes, at: int, what: str) -> SyntaxVerdict:
    line = data.count(b"\n", 0, at) + 1
    return SyntaxVerdict(False, 0.0, line, f"{what} at line {line}")


def c_check(text: str, language: str, max_error_fraction: float = 0.0, rounds: int = 6) -> SyntaxVerdict:
    """Macro-aware tree-sitter verdict for C (``language='c'``) or C++ (``'cpp'``), after ``bracket_check``.

    Args:
        text: the source file.
        language: ``c`` or ``cpp``.
        max_error_fraction: error bytes tolerated (as a fraction of the file) when no node is MISSING.
        rounds: reparses after blanking macro-like identifiers found in error nodes.
    """
    brackets = bracket_check(text, language)
    if not brackets.ok:
        return brackets
    data, spans, missing = c_parse(text, language, rounds)
    return _verdict(data, spans, missing, max_error_fraction)


def c_parse(text: str, language: str, rounds: int = 6) -> tuple[bytes, list[tuple[int, int]], int]:
    """The macro-aware view tree-sitter judges, its error spans and number of MISSING nodes.

    Args:
        text: the source file.
        language: ``c`` or ``cpp``.
        rounds: reparses after blanking macro-like identifiers found in error nodes.
    """
    cpp = language == "cpp"
    view, defined = c_view(text, cpp)
    buf = bytearray(view)
    _blank_macros(buf, {m.encode() for m in KNOWN_C_MACROS} | defined, cpp)
    parser = _parser("cpp" if cpp else "c")
    for _ in range(rounds):
        data = bytes(buf)
        spans, missing = _error_spans(parser.parse(data).root_node)
        if not spans:
            return data, spans, missing
        fixed = False
        for s, e in spans:
            if s == e:  # MISSING: the identifier just before it
                w = _last_ident(data, s - 200, s)
                span = _macro_only(data, w.start(), w.end()) if w and not data[w.end() : s].strip() else None
            else:
                span = _macro_only(data, s, e)
                prev = _last_ident(data, s - 100, s)
                if (
                    span is None
                    and prev
                    and not data[prev.end() : s].strip()
                    and re.fullmatch(rb"[A-Z][A-Z0-9_]{2,}", prev.group(0))
                ):  # `OSSL_DEPRECATEDIN_3_0 void f(void);`: the macro is taken for a type, the error follows
                    span = (prev.start(), prev.end())
                if span is None and e - s < 200:  # an error that starts just before a macro (`int V8_EXPORT f`)
                    for w in _IDENT.finditer(data, s, e):
                        span = _macro_only(data, w.start(), w.end())
                        if span:
                            break
            if span:
                _blank(buf, *span)
                fixed = True
        if not fixed:
            break
    data = bytes(buf)
    spans, missing = _error_spans(parser.parse(data).root_node)
    return data, spans, missing


