/*
 * tok_pretok.c — byte-level BPE pre-tokenizers: which regexes split text
 * into words for each tokenizer.ggml.pre value, and their compilation.
 *
 * A family has one to six regexes. Each one splits every piece the previous
 * one left, "isolated" as the reference tokenizers say: both the matches
 * and the text between them become pieces (tok_encode.c does the
 * splitting). The patterns are the families' own (their tokenizer.json), in
 * the forms llama.cpp lists them, except where PCRE2 can run the original
 * that a std::regex could not (Unicode subcategories, possessive
 * quantifiers). Case-insensitive contractions are written with ASCII
 * classes, so "'S" matches and no Unicode case folding ("ſ") sneaks in.
 *
 * Patterns compile with UTF and UCP (\s, \p{L} and friends are Unicode),
 * with MATCH_INVALID_UTF (text that is not valid UTF-8 is matched around,
 * never rejected), and are JIT-compiled.
 */
#include <stdio.h>

#include "text/tok_internal.h"

/* Contractions, as (?i:'s|'t|'re|'ve|'m|'ll|'d) with ASCII case only. */
#define RE_CONTRACTIONS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"

#define RE_LLAMA3                                                                      \
    RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*" \
                    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

#define RE_QWEN2                                                                     \
    RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*" \
                    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

#define RE_QWEN35                                                                        \
    RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}"                       \
                    "| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* Upper-then-lower runs of letters (Mistral's tekken, GPT-4o's o200k). */
#define RE_CASED_WORDS(SUFFIX)                                                   \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+" \
    SUFFIX "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+"                  \
           "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*" SUFFIX

/* CJK ideographs, and (as DeepSeek wrote the range) U+0800 up to them, and
 * Hangul syllables. */
#define RE_DEEPSEEK_CJK "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+"

/* Letters of the cased scripts (Latin, Greek, Cyrillic, Armenian, Georgian,
 * Cherokee, Glagolitic, Coptic, Deseret, ...): DeepSeek LLM's word class. */
#define RE_DEEPSEEK_LETTERS                                                              \
    "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}"  \
    "\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}" \
    "\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}"          \
    "\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}"               \
    "\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}"         \
    "\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}"         \
    "\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}"         \
    "\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}" \
    "\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}" \
    "\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}"          \
    "\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}"           \
    "\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}" \
    "\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}" \
    "\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}"          \
    "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}"         \
    "\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}"       \
    "\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}" \
    "\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+"

enum {
    PRE_IGNORE_MERGES = 1u << 0, /* a word that is a token is taken whole */
    PRE_ADD_BOS = 1u << 1,       /* add_bos defaults to true */
    PRE_NFC = 1u << 2,           /* NFC-normalise text (tokenizer.json's normalizer) */
};

struct pre_family {
    const char *names; /* tokenizer.ggml.pre values, '|'-separated */
    unsigned flags;
    const char *regex[TOK_MAX_REGEX];
};

static const struct pre_family g_families[] = {
    {"default", 0,
     {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}},
    {"llama3|llama-v3|llama-bpe|falcon3|falcon-h1|pixtral|midm-2.0|lfm2|jina-v5-nano",
     PRE_IGNORE_MERGES | PRE_ADD_BOS, {RE_LLAMA3}},
    {"dbrx|smaug-bpe|glm4|chatglm-bpe", 0, {RE_LLAMA3}},
    {"qwen2", PRE_NFC, {RE_QWEN2}},
    {"qwen35", PRE_NFC, {RE_QWEN35}},
    {"deepseek-r1-qwen|kormo|f2llmv2|stablelm2|megrez|hunyuan|solar-open|grok-2", 0,
     {RE_QWEN2}},
    {"deepseek-llm", 0,
     {"[\r\n]", RE_DEEPSEEK_LETTERS,
      "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
      "\\s+$", RE_DEEPSEEK_CJK, "\\p{N}+"}},
    {"deepseek-coder", 0,
     {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_DEEPSEEK_CJK, "\\p{N}"}},
    {"deepseek-v3|hunyuan-dense|joyai-llm|hy_v4", 0,
     {"\\p{N}{1,3}", "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+"
      "|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+"
      "|\\s+(?!\\S)|\\s+"}},
    {"falcon", 0, {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}},
    {"starcoder|refact|command-r|smollm|codeshell|exaone|minerva-7b|mellum2", 0,
     {"\\p{N}", RE_GPT2}},
    {"gpt-2|phi-2|mpt|olmo|jais|trillion|granite-docling|exaone4|gigachat|a.x-4.0|mellum"
     "|modern-bert|jina-es|jina-de|jina-v2-es|jina-v2-de|jina-v1-en|jina-v2-code|roberta-bpe",
     0, {RE_GPT2}},
    {"tekken", PRE_IGNORE_MERGES | PRE_ADD_BOS,
     {RE_CASED_WORDS("") "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    {"gpt-4o|llama4|kanana2|talkie|minimax-m2", 0,
     {RE_CASED_WORDS(RE_CONTRACTIONS "?") "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*"
                                          "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    {"bloom|gpt3-finnish|poro-chat", 0,
     {" ?[^(\\s|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{964}\\x{6D4}\\x{60C})]+"}},
    {"seed-coder", 0,
     {RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+"
                      "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    {"bailingmoe|bailingmoe2|llada-moe", 0,
     {"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}+|\\p{N}"
      "| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"}},
    {"minicpm5", PRE_IGNORE_MERGES,
     {"\\p{N}{1,3}", RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+"
                                     "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
};

/* Whether name is one of the '|'-separated entries of list. */
static bool name_in_list(const char *name, const char *list)
{
    size_t n = strlen(name);
    for (const char *p = list;;) {
        const char *end = strchr(p, '|');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && memcmp(p, name, n) == 0)
            return true;
        if (!end)
            return false;
        p = end + 1;
    }
}

static const struct pre_family *family_find(const char *pre)
{
    if (!pre[0])
        return &g_families[0]; /* no pre-tokenizer named: llama.cpp's default */
    for (size_t i = 0; i < sizeof g_families / sizeof g_families[0]; i++)
        if (name_in_list(pre, g_families[i].names))
            return &g_families[i];
    return NULL;
}

int tok_pretok_init(tokenizer *t, sw_err *err)
{
    const struct pre_family *f = family_find(t->pre);
    if (!f)
        return sw_errf(err, SW_EUNSUPPORTED, "tokenizer: unknown pre-tokenizer '%s'", t->pre);
    t->ignore_merges = (f->flags & PRE_IGNORE_MERGES) != 0;
    t->nfc = (f->flags & PRE_NFC) != 0;
    if (f->flags & PRE_ADD_BOS)
        t->add_bos = true;

    for (int i = 0; i < TOK_MAX_REGEX && f->regex[i]; i++) {
        int code;
        PCRE2_SIZE off;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)f->regex[i], PCRE2_ZERO_TERMINATED,
                                       PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code,
                                       &off, NULL);
        if (!re) {
            char msg[160];
            pcre2_get_error_message(code, (PCRE2_UCHAR *)msg, sizeof msg);
            return sw_errf(err, SW_EINVAL, "tokenizer: pre-tokenizer '%s' regex %d: %s at %zu",
                           t->pre, i, msg, (size_t)off);
        }
        /* Without JIT (an unsupported CPU) pcre2_match interprets instead. */
        (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
        t->regex[t->n_regex++] = re;
    }
    return 0;
}

void tok_pretok_free(tokenizer *t)
{
    for (int i = 0; i < t->n_regex; i++)
        pcre2_code_free(t->regex[i]);
    t->n_regex = 0;
}
