/*
 * main.c -- the fanyi command line: options, input and output, exit codes.
 * All translation and tokenization goes through the public API in fanyi.h,
 * the only library header it includes.
 *
 * Exit codes: 0 success, 1 usage, 2 model or file error, 3 input error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <utf8proc.h>

#include "fanyi.h"
#include "lineio.h"

#ifndef FANYI_DATADIR
#define FANYI_DATADIR "/usr/local/share/fanyi"
#endif
#define DEFAULT_MODEL "en-de"
#define FANYI_MODEL_DIRS 6 /* places named models are looked up in (model_dirs) */

enum { EXIT_USAGE = 1, EXIT_MODEL = 2, EXIT_INPUT = 3 };
enum io_kind { IO_TEXT, IO_IDS };
enum out_format { FORMAT_TEXT, FORMAT_TSV, FORMAT_JSONL };

typedef struct {
    const char *model;
    const char *output_file;
    enum io_kind input, output;
    enum out_format format;
    int scores, batch_size, progress, list_models;
    fanyi_options opts;
    char **files;
    int n_files;
} cli_options;

/* One batch of input lines, copied out of the reader's buffer. */
typedef struct {
    char **lines; /* parallel to lens and line_numbers, as the API takes them */
    size_t *lens;
    long *line_numbers;
    int n;
    size_t cap_lines, cap_lens, cap_numbers;
} batch;

static const char *prog = "fanyi";

/* Makes room for `need` elements of `elem` bytes in the growable array *buf of
 * capacity *cap (doubling); returns 0 when memory runs out (*buf unchanged). */
static int grow(void *buf, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t n = *cap ? *cap : 16;
    while (n < need) n *= 2;
    if (n > SIZE_MAX / elem) return 0;
    void *p = realloc(*(void **)buf, n * elem);
    if (!p) return 0;
    *(void **)buf = p;
    *cap = n;
    return 1;
}

static void die_usage(const char *msg) {
    fprintf(stderr, "%s: %s\nTry '%s --help'.\n", prog, msg, prog);
    exit(EXIT_USAGE);
}

static int exit_code_for(int status) {
    switch (status) {
    case FANYI_OK: return 0;
    case FANYI_ERR_USAGE: return EXIT_USAGE;
    case FANYI_ERR_INPUT: return EXIT_INPUT;
    default: return EXIT_MODEL;
    }
}

static void usage(void) {
    printf("Usage: %s [OPTIONS] [FILE...]\n"
           "       %s get [--revision REV] [--dtype f32|f16|int8] [--name NAME] MODEL\n"
           "       %s spm-encode --model FILE [--output_format=id|piece]\n"
           "       %s spm-decode --model FILE [--input_format=id|piece]\n"
           "Translate lines of text (from FILEs, or standard input; '-' is standard input).\n"
           "One output line per input line, in order; an empty line gives an empty line.\n\n"
           "  -m, --model DIR|NAME      model directory, or the name of an installed model\n"
           "                            (default: $FANYI_MODEL, else the installed '" DEFAULT_MODEL "')\n"
           "  -b, --beam N              beam size, 1 to " FANYI_STR(FANYI_MAX_BEAM) " (1 = greedy; default: the model's)\n"
           "  -n, --nbest N             print the N best translations (Marian n-best format; N <= beam)\n"
           "      --max-length N        at most N target tokens\n"
           "      --max-length-ratio R  at most ceil(R * source tokens) target tokens (0 = off)\n"
           "      --length-penalty A    rank by logprob / length^A\n"
           "      --no-repeat-ngram N   never repeat an N-gram in a translation (0 = off)\n"
           "      --repetition-penalty X  multiply the log-probability of tokens already\n"
           "                            produced by X (> 1 discourages repeats; 1 = off)\n"
           "      --target-lang L       target language of a multi-target model (fra or >>fra<<;\n"
           "                            --list-models shows a model's languages)\n"
           "  -t, --threads N           worker threads, 1 to " FANYI_STR(FANYI_MAX_THREADS)
           " (default: one per CPU, up to 8)\n"
           "      --batch-size N        sentences translated together (default 32)\n"
           "      --input text|ids      read text (default) or space-separated token ids\n"
           "      --output text|ids     write text (default) or token ids\n"
           "      --format text|tsv|jsonl  output layout (tsv: source<TAB>translation)\n"
           "      --scores              prefix each translation with its score\n"
           "      --split-sentences     translate each sentence of a line separately, then rejoin\n"
           "      --progress            show progress on standard error (default: when translating\n"
           "                            files with standard error on a terminal)\n"
           "      --list-models         list the installed models and exit\n"
           "  -o, --output-file FILE    write to FILE instead of standard output\n"
           "  -h, --help                show this help\n"
           "  -V, --version             show the version\n\n"
           "'%s get' downloads an Opus-MT model from the Hugging Face hub and installs it\n"
           "(e.g. %s get Helsinki-NLP/opus-mt-en-de; then %s -m opus-mt-en-de).\n\n"
           "Exit status: 0 success, 1 usage error, 2 model or file error, 3 input error.\n",
           prog, prog, prog, prog, prog, prog, prog);
}

static long parse_long(const char *s, long lo, long hi, const char *what) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        char msg[256];
        snprintf(msg, sizeof msg, "invalid %s '%s' (expected an integer in [%ld, %ld])", what, s, lo, hi);
        die_usage(msg);
    }
    return v;
}

static float parse_float(const char *s, const char *what) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || *end || end == s || !(v >= 0) || !isfinite(v)) {
        char msg[256];
        snprintf(msg, sizeof msg, "invalid %s '%s' (expected a finite non-negative number)", what, s);
        die_usage(msg);
    }
    return v;
}

static enum io_kind parse_io(const char *s, const char *what) {
    if (!strcmp(s, "text")) return IO_TEXT;
    if (!strcmp(s, "ids")) return IO_IDS;
    char msg[256];
    snprintf(msg, sizeof msg, "%s must be 'text' or 'ids', not '%s'", what, s);
    die_usage(msg);
    return IO_TEXT;
}

static void parse_args(int argc, char **argv, cli_options *o) {
    enum { OPT_MAXLEN = 256, OPT_RATIO, OPT_LP, OPT_BATCH, OPT_INPUT, OPT_OUTPUT, OPT_FORMAT, OPT_SCORES,
           OPT_SPLIT, OPT_PROGRESS, OPT_LIST, OPT_LANG, OPT_NGRAM, OPT_REPEAT };
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},       {"beam", required_argument, 0, 'b'},
        {"nbest", required_argument, 0, 'n'},       {"max-length", required_argument, 0, OPT_MAXLEN},
        {"max-length-ratio", required_argument, 0, OPT_RATIO}, {"length-penalty", required_argument, 0, OPT_LP},
        {"threads", required_argument, 0, 't'},     {"batch-size", required_argument, 0, OPT_BATCH},
        {"input", required_argument, 0, OPT_INPUT}, {"output", required_argument, 0, OPT_OUTPUT},
        {"format", required_argument, 0, OPT_FORMAT}, {"scores", no_argument, 0, OPT_SCORES},
        {"split-sentences", no_argument, 0, OPT_SPLIT}, {"progress", no_argument, 0, OPT_PROGRESS},
        {"list-models", no_argument, 0, OPT_LIST}, {"target-lang", required_argument, 0, OPT_LANG},
        {"no-repeat-ngram", required_argument, 0, OPT_NGRAM}, {"repetition-penalty", required_argument, 0, OPT_REPEAT},
        {"output-file", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},           {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    fanyi_options_default(&o->opts);
    o->batch_size = 32;
    int c;
    while ((c = getopt_long(argc, argv, "m:b:n:t:o:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'b': o->opts.beam_size = (int)parse_long(optarg, 1, FANYI_MAX_BEAM, "beam size"); break;
        case 'n': o->opts.nbest = (int)parse_long(optarg, 1, FANYI_MAX_BEAM, "n-best size"); break;
        case 't': o->opts.threads = (int)parse_long(optarg, 1, FANYI_MAX_THREADS, "thread count"); break;
        case 'o': o->output_file = optarg; break;
        case OPT_MAXLEN: o->opts.max_length = (int)parse_long(optarg, 1, 1 << 20, "max length"); break;
        case OPT_RATIO: o->opts.max_length_ratio = parse_float(optarg, "max length ratio"); break;
        case OPT_LP: o->opts.length_penalty = parse_float(optarg, "length penalty"); break;
        case OPT_BATCH: o->batch_size = (int)parse_long(optarg, 1, 4096, "batch size"); break;
        case OPT_INPUT: o->input = parse_io(optarg, "--input"); break;
        case OPT_OUTPUT: o->output = parse_io(optarg, "--output"); break;
        case OPT_FORMAT:
            if (!strcmp(optarg, "text")) o->format = FORMAT_TEXT;
            else if (!strcmp(optarg, "tsv")) o->format = FORMAT_TSV;
            else if (!strcmp(optarg, "jsonl")) o->format = FORMAT_JSONL;
            else die_usage("--format must be text, tsv or jsonl");
            break;
        case OPT_SCORES: o->scores = 1; break;
        case OPT_SPLIT: o->opts.split_sentences = 1; break;
        case OPT_PROGRESS: o->progress = 1; break;
        case OPT_LIST: o->list_models = 1; break;
        case OPT_LANG: o->opts.target_lang = optarg; break;
        case OPT_NGRAM: /* 0 turns off a model's default */
            o->opts.no_repeat_ngram = (int)parse_long(optarg, 0, FANYI_MAX_NGRAM, "no-repeat n-gram size");
            if (!o->opts.no_repeat_ngram) o->opts.no_repeat_ngram = -1;
            break;
        case OPT_REPEAT:
            o->opts.repetition_penalty = parse_float(optarg, "repetition penalty");
            if (o->opts.repetition_penalty <= 0 || o->opts.repetition_penalty > 100)
                die_usage("--repetition-penalty must be in (0, 100] (1 = off)");
            break;
        case 'h': usage(); exit(0);
        case 'V': printf("fanyi %s\n", FANYI_VERSION); exit(0);
        default: fprintf(stderr, "Try '%s --help'.\n", prog); exit(EXIT_USAGE);
        }
    }
    if (o->opts.nbest > 0 && o->opts.beam_size > 0 && o->opts.nbest > o->opts.beam_size)
        die_usage("--nbest must not exceed --beam");
    if (o->opts.target_lang && o->input == IO_IDS)
        die_usage("--target-lang applies to text; with --input ids, write the language code's id first");
    o->files = argv + optind;
    o->n_files = argc - optind;
}

/* ---- finding the model ---------------------------------------------------- */

static int is_dir_with_config(const char *dir) {
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/config.json", dir);
    return n > 0 && (size_t)n < sizeof path && access(path, R_OK) == 0;
}

/* Where named models live, in order: next to the binary (models/, a build
 * tree), the user's ($XDG_DATA_HOME/fanyi/models, else
 * ~/.local/share/fanyi/models), the installation the binary belongs to
 * (../share/fanyi/models, so an installed tree can be moved), then the
 * configured data directory. */
static int model_dirs(char dirs[][PATH_MAX], int cap) {
    int n = 0;
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        if (n < cap && snprintf(dirs[n], PATH_MAX, "%s/models", exe) < PATH_MAX) n++;
#ifdef FANYI_TREE_MODELS /* a binary built under build/ (sanitizers) uses the source tree's models */
        if (n < cap && snprintf(dirs[n], PATH_MAX, "%s/" FANYI_TREE_MODELS, exe) < PATH_MAX) n++;
#endif
    }
    /* The user's models ('fanyi get' installs there), as the XDG base directory spec places data. */
    const char *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
    if (n < cap && xdg && xdg[0] == '/' && snprintf(dirs[n], PATH_MAX, "%s/fanyi/models", xdg) < PATH_MAX) n++;
    else if (n < cap && home && home[0] && snprintf(dirs[n], PATH_MAX, "%s/.local/share/fanyi/models", home) < PATH_MAX)
        n++;
    if (len > 0 && n < cap && snprintf(dirs[n], PATH_MAX, "%s/../share/fanyi/models", exe) < PATH_MAX) n++;
    if (n < cap && snprintf(dirs[n], PATH_MAX, "%s/models", FANYI_DATADIR) < PATH_MAX) n++;
    return n;
}

/* -m NAME|DIR, else $FANYI_MODEL, else the default model; a NAME (no '/') is
 * looked up in the model directories unless it is a directory here. */
static const char *resolve_model(const char *name, char *buf, size_t cap) {
    if (!name) name = getenv("FANYI_MODEL");
    if (!name || !*name) name = DEFAULT_MODEL;
    if (strchr(name, '/') || is_dir_with_config(name)) return name;
    char dirs[FANYI_MODEL_DIRS][PATH_MAX];
    int n = model_dirs(dirs, FANYI_MODEL_DIRS);
    for (int i = 0; i < n; i++) {
        int len = snprintf(buf, cap, "%s/%s", dirs[i], name);
        if (len > 0 && (size_t)len < cap && is_dir_with_config(buf)) return buf;
    }
    snprintf(buf, cap, "%s/%s", n ? dirs[n - 1] : ".", name);
    return buf;
}

/* A multi-target model's language codes, on one indented line. */
static void print_target_langs(const char *model_dir) {
    fanyi_error err = {0};
    fanyi_model *model = fanyi_load(model_dir, &err);
    if (!model) {
        printf("             (cannot load: %s)\n", err.message);
        return;
    }
    int n = fanyi_target_langs(model, NULL, 0);
    const char **langs = n ? malloc(sizeof *langs * (size_t)n) : NULL;
    if (langs) {
        fanyi_target_langs(model, langs, n);
        printf("             target languages (--target-lang):");
        for (int i = 0; i < n; i++) printf(" %s", langs[i]);
        putchar('\n');
    }
    free(langs);
    fanyi_free(model);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int list_models(void) {
    char dirs[FANYI_MODEL_DIRS][PATH_MAX], path[2 * PATH_MAX];
    int n = model_dirs(dirs, FANYI_MODEL_DIRS), shown = 0;
    for (int i = 0; i < n; i++) {
        DIR *d = opendir(dirs[i]);
        if (!d) continue;
        char **names = NULL;
        size_t count = 0, cap = 0;
        for (struct dirent *e; (e = readdir(d));) {
            snprintf(path, sizeof path, "%s/%s", dirs[i], e->d_name);
            if (e->d_name[0] == '.' || !is_dir_with_config(path)) continue;
            char *copy = strdup(e->d_name);
            if (!copy || !grow(&names, &cap, count + 1, sizeof *names)) {
                free(copy);
                break;
            }
            names[count++] = copy;
        }
        closedir(d);
        qsort(names, (size_t)count, sizeof *names, by_name);
        for (size_t k = 0; k < count; k++) {
            char real[PATH_MAX];
            snprintf(path, sizeof path, "%s/%s", dirs[i], names[k]);
            printf("%-12s %s%s\n", names[k], realpath(path, real) ? real : path,
                   strcmp(names[k], DEFAULT_MODEL) ? "" : "  (default)");
            print_target_langs(path);
            free(names[k]);
            shown++;
        }
        free(names);
    }
    if (!shown) fprintf(stderr, "%s: no installed models found\n", prog);
    return 0;
}

/* ---- where output goes --------------------------------------------------------- */

static int same_file(const struct stat *a, const struct stat *b) {
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* Reading a file while it is truncated or replaced loses it, so a run whose
 * output is one of its inputs (by device and inode, whatever the names) is
 * refused before anything is opened for writing. */
static void refuse_input_as_output(const cli_options *o) {
    struct stat out_st, in_st;
    int to_file = o->output_file && strcmp(o->output_file, "-");
    const char *out_name = to_file ? o->output_file : "standard output";
    if ((to_file ? stat(o->output_file, &out_st) : fstat(1, &out_st)) != 0 || !S_ISREG(out_st.st_mode)) return;
    int n_inputs = o->n_files ? o->n_files : 1; /* no files: standard input */
    for (int i = 0; i < n_inputs; i++) {
        const char *name = o->n_files ? o->files[i] : "-";
        int is_stdin = !strcmp(name, "-");
        if ((is_stdin ? fstat(0, &in_st) : stat(name, &in_st)) != 0 || !S_ISREG(in_st.st_mode)) continue;
        if (same_file(&in_st, &out_st)) {
            fprintf(stderr, "%s: input file %s is also the output (%s); refusing to overwrite it\n", prog,
                    is_stdin ? "on standard input" : name, out_name);
            exit(EXIT_USAGE);
        }
    }
}

/* An output file is written beside its final name and renamed over it only
 * once everything succeeded, so a failed or interrupted run leaves what was
 * there before. FIFOs and devices are written in place. */
typedef struct {
    FILE *f;
    const char *name; /* for messages */
    char *final_path; /* both NULL when written in place */
    char *tmp_path;
} output_file;

/* The temporary file a signal must not leave behind; the CLI's one piece of
 * process-wide state, because a signal handler can reach nothing else. */
static char *volatile pending_tmp;

static void remove_tmp_and_die(int sig) {
    char *tmp = pending_tmp;
    if (tmp) unlink(tmp);
    signal(sig, SIG_DFL);
    raise(sig);
}

static int output_fail(const char *what, const char *path) {
    fprintf(stderr, "%s: %s%s: %s\n", prog, what, path, strerror(errno));
    return EXIT_MODEL;
}

static int output_open(output_file *out, const char *path) {
    memset(out, 0, sizeof *out);
    if (!path || !strcmp(path, "-")) {
        out->f = stdout;
        out->name = "standard output";
        return 0;
    }
    out->name = path;
    struct stat st;
    int exists = stat(path, &st) == 0;
    if (exists && !S_ISREG(st.st_mode)) {
        out->f = fopen(path, "w");
        return out->f ? 0 : output_fail("", path);
    }
    if (exists && access(path, W_OK) != 0) return output_fail("", path);
    out->final_path = exists ? realpath(path, NULL) : strdup(path); /* a symlink's target is replaced */
    const char *final = out->final_path;
    const char *slash = final ? strrchr(final, '/') : NULL;
    size_t dir_len = slash ? (size_t)(slash - final) + 1 : 0;
    size_t cap = final ? strlen(final) + 32 : 0;
    out->tmp_path = final ? malloc(cap) : NULL;
    if (!out->tmp_path) {
        free(out->final_path);
        out->final_path = NULL;
        fprintf(stderr, "%s: out of memory\n", prog);
        return EXIT_MODEL;
    }
    snprintf(out->tmp_path, cap, "%.*s.%s.fanyi-XXXXXX", (int)dir_len, final, final + dir_len);
    mode_t mask = umask(0);
    umask(mask);
    int fd = mkstemp(out->tmp_path);
    if (fd < 0) {
        int saved = errno;
        free(out->tmp_path), free(out->final_path);
        out->tmp_path = out->final_path = NULL;
        if (exists && (saved == EACCES || saved == EPERM || saved == EROFS)) {
            /* A writable file in a directory we may not add to: written in place, as the shell would. */
            out->f = fopen(path, "w");
            return out->f ? 0 : output_fail("", path);
        }
        errno = saved;
        return output_fail("cannot create a temporary file beside ", path);
    }
    if (exists) {
        if (fchown(fd, st.st_uid, st.st_gid) != 0) { /* only root can give a file away; keep ours */
        }
        fchmod(fd, st.st_mode & 07777);
    } else
        fchmod(fd, 0666 & ~mask);
    pending_tmp = out->tmp_path;
    signal(SIGINT, remove_tmp_and_die);
    signal(SIGTERM, remove_tmp_and_die);
    signal(SIGHUP, remove_tmp_and_die);
    out->f = fdopen(fd, "w");
    if (!out->f) {
        int saved = errno;
        unlink(out->tmp_path);
        close(fd);
        pending_tmp = NULL;
        free(out->tmp_path), free(out->final_path);
        out->tmp_path = out->final_path = NULL;
        errno = saved;
        return output_fail("", path);
    }
    return 0;
}

/* Closes the output; on success the new file takes the final name, on failure
 * (rc != 0) it is removed and the old file, if any, stays. Returns the exit code. */
static int output_close(output_file *out, int rc) {
    if (out->f == stdout) return rc;
    if (fclose(out->f) != 0 && !rc) {
        fprintf(stderr, "%s: %s: write error: %s\n", prog, out->name, strerror(errno));
        rc = EXIT_MODEL;
    }
    if (out->tmp_path) {
        if (!rc && rename(out->tmp_path, out->final_path) != 0) rc = output_fail("cannot write ", out->name);
        if (rc) {
            unlink(out->tmp_path);
            fprintf(stderr, "%s: %s: nothing written because of the error above\n", prog, out->name);
        }
        pending_tmp = NULL;
        free(out->tmp_path), free(out->final_path);
    }
    return rc;
}

/* ---- output ---------------------------------------------------------------- */

/* JSON output is always valid JSON in valid UTF-8: each byte that does not
 * start a valid UTF-8 character becomes U+FFFD, as in the translation. */
static void write_json_string(FILE *out, const char *s, size_t n) {
    fputc('"', out);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        utf8proc_int32_t cp;
        utf8proc_ssize_t len = c < 0x80 ? 1 : utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (len <= 0) {
            fputs("\xef\xbf\xbd", out);
            i++;
            continue;
        }
        if (c == '"' || c == '\\') fprintf(out, "\\%c", c);
        else if (c == '\n') fputs("\\n", out);
        else if (c == '\t') fputs("\\t", out);
        else if (c == '\r') fputs("\\r", out);
        else if (c < 0x20 || c == 0x7f) fprintf(out, "\\u%04x", c);
        else fwrite(s + i, 1, (size_t)len, out);
        i += (size_t)len;
    }
    fputc('"', out);
}

/* JSON has no NaN or infinity: a non-finite score is null. */
static void write_json_score(FILE *out, double score) {
    if (isfinite(score)) fprintf(out, "%.6g", score);
    else fputs("null", out);
}

static void write_hyp(FILE *out, const cli_options *o, const fanyi_hypothesis *h) {
    if (o->output == IO_IDS || !h->text) {
        for (int k = 0; k < h->n_ids; k++) fprintf(out, k ? " %d" : "%d", h->ids[k]);
    } else {
        /* A translation must stay on one line. */
        for (const char *p = h->text; *p; p++) fputc(*p == '\n' || *p == '\r' ? ' ' : *p, out);
    }
}

static void write_hyp_json(FILE *out, const cli_options *o, const fanyi_hypothesis *h) {
    if (o->output == IO_IDS || !h->text) {
        fputc('[', out);
        for (int k = 0; k < h->n_ids; k++) fprintf(out, k ? ",%d" : "%d", h->ids[k]);
        fputc(']', out);
    } else
        write_json_string(out, h->text, strlen(h->text));
}

static void write_result(FILE *out, const cli_options *o, long index, const char *src, size_t src_len,
                         const fanyi_result *r) {
    const fanyi_hypothesis *best = r->n_hyps ? &r->hyps[0] : NULL;
    if (o->format == FORMAT_JSONL) {
        fputs("{\"source\":", out);
        write_json_string(out, src, src_len);
        fputs(",\"translation\":", out);
        if (best) write_hyp_json(out, o, best);
        else fputs(o->output == IO_IDS ? "[]" : "\"\"", out);
        fputs(",\"score\":", out);
        write_json_score(out, best ? best->score : 0.0);
        fputs(",\"nbest\":[", out);
        for (int j = 0; j < r->n_hyps; j++) {
            fputs(j ? ",{\"translation\":" : "{\"translation\":", out);
            write_hyp_json(out, o, &r->hyps[j]);
            fputs(",\"score\":", out);
            write_json_score(out, r->hyps[j].score);
            fputc('}', out);
        }
        fputs("]}\n", out);
        return;
    }
    if (o->opts.nbest > 1) { /* Marian's n-best layout: index ||| translation ||| score */
        for (int j = 0; j < r->n_hyps; j++) {
            fprintf(out, "%ld ||| ", index);
            write_hyp(out, o, &r->hyps[j]);
            fprintf(out, " ||| %.6f\n", r->hyps[j].score);
        }
        if (!r->n_hyps) fprintf(out, "%ld ||| ||| 0\n", index);
        return;
    }
    if (o->scores) fprintf(out, "%.6f\t", best ? best->score : 0.0);
    if (o->format == FORMAT_TSV) {
        for (size_t i = 0; i < src_len; i++) fputc(src[i] == '\t' ? ' ' : src[i], out);
        fputc('\t', out);
    }
    if (best) write_hyp(out, o, best);
    fputc('\n', out);
}

/* ---- progress ---------------------------------------------------------------- */

typedef struct {
    int enabled;
    double start, last;
    long lines;
    double bytes_done, bytes_total; /* total 0: unknown */
} progress;

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* Redraws the status line on stderr at most 10 times a second (and at the end). */
static void progress_show(progress *p, int final) {
    if (!p->enabled) return;
    double t = now_seconds();
    if (!final && t - p->last < 0.1) return;
    p->last = t;
    double rate = p->lines / (t - p->start > 1e-3 ? t - p->start : 1e-3);
    fprintf(stderr, "\r%ld lines, %.1f lines/s", p->lines, rate);
    if (p->bytes_total > 0) {
        double frac = p->bytes_done / p->bytes_total;
        double eta = frac > 0 ? (t - p->start) * (1 - frac) / frac : 0;
        fprintf(stderr, ", %3.0f%%, ETA %02d:%02d", 100 * frac, (int)eta / 60, (int)eta % 60);
    }
    fputs(final ? "\n" : "  ", stderr);
    fflush(stderr);
}

/* ---- input ---------------------------------------------------------------- */

static int batch_add(batch *b, const char *line, size_t len, long number) {
    size_t need = (size_t)b->n + 1;
    if (!grow(&b->lines, &b->cap_lines, need, sizeof *b->lines) ||
        !grow(&b->lens, &b->cap_lens, need, sizeof *b->lens) ||
        !grow(&b->line_numbers, &b->cap_numbers, need, sizeof *b->line_numbers))
        return 0;
    char *copy = malloc(len + 1);
    if (!copy) return 0;
    memcpy(copy, line, len);
    copy[len] = '\0';
    b->lines[b->n] = copy;
    b->lens[b->n] = len;
    b->line_numbers[b->n] = number;
    b->n++;
    return 1;
}

static void batch_clear(batch *b) {
    for (int i = 0; i < b->n; i++) free(b->lines[i]);
    b->n = 0;
}

/* Parses a line of space-separated ids; returns 0 and names the problem on error. */
static int parse_ids(const char *line, size_t len, int **ids, int *n, char *why, size_t why_cap) {
    struct { int *ids; size_t n, cap; } v = {0};
    const char *p = line, *end = line + len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        if (p == end) break;
        char *stop;
        errno = 0;
        long x = strtol(p, &stop, 10);
        if (stop == p || errno || x < 0 || x > INT_MAX || (stop < end && *stop != ' ' && *stop != '\t')) {
            snprintf(why, why_cap, "'%.*s' is not a token id", (int)(end - p > 20 ? 20 : end - p), p);
            free(v.ids);
            return 0;
        }
        if (!grow(&v.ids, &v.cap, v.n + 1, sizeof *v.ids)) return free(v.ids), snprintf(why, why_cap, "out of memory"), 0;
        v.ids[v.n++] = (int)x;
        p = stop;
    }
    *ids = v.ids ? v.ids : malloc(sizeof(int));
    *n = (int)v.n;
    return *ids != NULL;
}

static int translate_batch(const fanyi_model *model, const cli_options *o, batch *b, FILE *out, const char *input_name,
                           long *index) {
    fanyi_result *results = NULL;
    fanyi_error err = {0};
    int rc;
    if (o->input == IO_IDS) {
        int **ids = calloc((size_t)b->n, sizeof *ids), *lens = calloc((size_t)b->n, sizeof *lens);
        rc = ids && lens ? FANYI_OK : FANYI_ERR_MEMORY;
        for (int i = 0; !rc && i < b->n; i++) {
            char why[128];
            if (!parse_ids(b->lines[i], b->lens[i], &ids[i], &lens[i], why, sizeof why)) {
                fprintf(stderr, "%s: %s:%ld: %s\n", prog, input_name, b->line_numbers[i], why);
                rc = FANYI_ERR_INPUT;
                err.message[0] = '\0';
            }
        }
        if (!rc) rc = fanyi_translate_ids(model, (const int *const *)ids, lens, b->n, &o->opts, &results, &err);
        for (int i = 0; ids && i < b->n; i++) free(ids[i]);
        free(ids), free(lens);
    } else
        rc = fanyi_translate_text(model, (const char *const *)b->lines, b->lens, b->n, &o->opts, &results, &err);
    if (rc) {
        if (err.message[0]) fprintf(stderr, "%s: %s: %s\n", prog, input_name, err.message);
        return rc;
    }
    for (int i = 0; i < b->n; i++) {
        if (results[i].warnings & FANYI_WARN_INVALID_UTF8)
            fprintf(stderr, "%s: warning: %s:%ld: invalid UTF-8 replaced by U+FFFD\n", prog, input_name,
                    b->line_numbers[i]);
        if (results[i].warnings & FANYI_WARN_SPLIT)
            fprintf(stderr, "%s: warning: %s:%ld: line longer than the model allows; translated in pieces\n", prog,
                    input_name, b->line_numbers[i]);
        if (results[i].warnings & FANYI_WARN_TRUNCATED)
            fprintf(stderr, "%s: warning: %s:%ld: line longer than the model allows; truncated\n", prog, input_name,
                    b->line_numbers[i]);
        write_result(out, o, (*index)++, b->lines[i], b->lens[i], &results[i]);
    }
    fanyi_results_free(results, b->n);
    return FANYI_OK;
}

static int check_output(FILE *out, const char *name) {
    if (fflush(out) == 0 && !ferror(out)) return 0;
    fprintf(stderr, "%s: %s: write error: %s\n", prog, name, strerror(errno));
    return EXIT_MODEL;
}

static int translate_stream(const fanyi_model *model, const cli_options *o, int fd, const char *name, FILE *out,
                            const char *out_name, long *index, progress *prog_state) {
    fy_reader r;
    batch b = {0};
    if (!fy_reader_open(&r, fd)) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return EXIT_MODEL;
    }
    const char *line;
    size_t len;
    long number = 0;
    int rc = 0, got;
    while (!rc && (got = fy_reader_line(&r, &line, &len)) > 0) {
        if (!batch_add(&b, line, len, ++number)) {
            fprintf(stderr, "%s: out of memory\n", prog);
            rc = EXIT_MODEL;
            break;
        }
        prog_state->bytes_done += (double)len + 1;
        /* Translate what we have once the batch is full or the writer pauses. */
        if (b.n >= o->batch_size || !fy_reader_ready(&r)) {
            rc = exit_code_for(translate_batch(model, o, &b, out, name, index));
            prog_state->lines += b.n;
            batch_clear(&b);
            if (!rc) rc = check_output(out, out_name);
            progress_show(prog_state, 0);
        }
    }
    if (!rc && r.error) {
        fprintf(stderr, "%s: %s: read error: %s\n", prog, name, strerror(errno));
        rc = EXIT_MODEL;
    }
    if (!rc && b.n) {
        rc = exit_code_for(translate_batch(model, o, &b, out, name, index));
        prog_state->lines += b.n;
        if (!rc) rc = check_output(out, out_name);
    }
    batch_clear(&b);
    free(b.lines), free(b.lens), free(b.line_numbers);
    fy_reader_close(&r);
    return rc;
}

/* ---- spm-encode / spm-decode -------------------------------------------------- */

static int spm_tool(int argc, char **argv, int encode) {
    const char *model_path = NULL, *format = encode ? "piece" : "piece";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strncmp(a, "--model=", 8)) model_path = a + 8;
        else if (!strcmp(a, "--model") && i + 1 < argc) model_path = argv[++i];
        else if (encode && !strncmp(a, "--output_format=", 16)) format = a + 16;
        else if (!encode && !strncmp(a, "--input_format=", 15)) format = a + 15;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("Usage: %s %s --model FILE [--%s=id|piece] < input\n", prog, argv[0],
                   encode ? "output_format" : "input_format");
            return 0;
        } else {
            fprintf(stderr, "%s %s: unknown argument '%s'\n", prog, argv[0], a);
            return EXIT_USAGE;
        }
    }
    int ids = !strcmp(format, "id");
    if (!model_path || (!ids && strcmp(format, "piece"))) {
        fprintf(stderr, "%s %s: need --model FILE and a format of 'id' or 'piece'\n", prog, argv[0]);
        return EXIT_USAGE;
    }
    fanyi_error err = {0};
    fanyi_tokenizer *tok = fanyi_tokenizer_load(model_path, &err);
    if (!tok) {
        fprintf(stderr, "%s: %s\n", prog, err.message);
        return EXIT_MODEL;
    }
    fy_reader r;
    if (!fy_reader_open(&r, 0)) return EXIT_MODEL;
    const char *line;
    size_t len;
    long number = 0;
    int rc = 0;
    const char **pieces = NULL;
    size_t *piece_lens = NULL, cap_pieces = 0, cap_lens = 0;
    while (!rc && fy_reader_line(&r, &line, &len) > 0) {
        number++;
        int warnings = 0, *v = NULL, n_ids = 0;
        char *text = NULL;
        size_t text_len = 0;
        if (encode && ids) {
            rc = fanyi_tokenize(tok, line, len, &v, &n_ids, &warnings, &err);
            for (int k = 0; !rc && k < n_ids; k++) printf(k ? " %d" : "%d", v[k]);
        } else if (encode) {
            rc = fanyi_tokenize_pieces(tok, line, len, &text, &text_len, &warnings, &err);
        } else if (ids) {
            char why[128];
            if (!parse_ids(line, len, &v, &n_ids, why, sizeof why)) {
                fprintf(stderr, "%s: line %ld: %s\n", prog, number, why);
                rc = FANYI_ERR_INPUT;
                break;
            }
            rc = fanyi_detokenize(tok, v, n_ids, &text, &text_len, &err);
        } else {
            /* Pieces separated by spaces, as many as the line holds. */
            int n = 0;
            for (size_t i = 0; !rc && i < len;) {
                while (i < len && line[i] == ' ') i++;
                size_t j = i;
                while (j < len && line[j] != ' ') j++;
                if (j > i) {
                    if (!grow(&pieces, &cap_pieces, (size_t)n + 1, sizeof *pieces) ||
                        !grow(&piece_lens, &cap_lens, (size_t)n + 1, sizeof *piece_lens)) {
                        snprintf(err.message, sizeof err.message, "out of memory");
                        rc = FANYI_ERR_MEMORY;
                    } else
                        pieces[n] = line + i, piece_lens[n++] = j - i;
                }
                i = j;
            }
            if (!rc) rc = fanyi_detokenize_pieces(tok, pieces, piece_lens, n, &text, &text_len, &err);
        }
        if (!rc && text_len) fwrite(text, 1, text_len, stdout);
        free(text);
        free(v);
        if (warnings) fprintf(stderr, "%s: warning: line %ld: invalid UTF-8 replaced by U+FFFD\n", prog, number);
        if (rc && err.message[0]) fprintf(stderr, "%s: line %ld: %s\n", prog, number, err.message);
        putchar('\n');
    }
    free(pieces), free(piece_lens);
    fy_reader_close(&r);
    fanyi_tokenizer_free(tok);
    if (rc) return exit_code_for(rc);
    return check_output(stdout, "standard output");
}

/* ---- fanyi get ----------------------------------------------------------------- */

/* 'fanyi get' is tools/fanyi_get.py (downloading and converting is Python's
 * work), found beside the binary in a build tree or under the installed
 * share/fanyi/tools, and run by Debian's python3. */
static int get_tool(char **argv) {
    char exe[PATH_MAX], script[PATH_MAX + 64];
    const char *places[] = {"%s/tools/fanyi_get.py", "%s/../../tools/fanyi_get.py", "%s/../share/fanyi/tools/fanyi_get.py"};
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    int found = 0;
    if (len > 0) {
        exe[len] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        for (size_t i = 0; !found && i < sizeof places / sizeof *places; i++) {
            snprintf(script, sizeof script, places[i], exe);
            found = access(script, R_OK) == 0;
        }
    }
    if (!found) {
        snprintf(script, sizeof script, "%s/tools/fanyi_get.py", FANYI_DATADIR);
        found = access(script, R_OK) == 0;
    }
    if (!found) {
        fprintf(stderr, "%s get: tools/fanyi_get.py is not installed beside this binary or in %s\n", prog, FANYI_DATADIR);
        return EXIT_MODEL;
    }
    const char *python = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
    int n = 0;
    while (argv[n]) n++;
    char **args = calloc((size_t)n + 2, sizeof *args);
    if (!args) return EXIT_MODEL;
    args[0] = (char *)python;
    args[1] = script;
    for (int i = 1; i < n; i++) args[i + 1] = argv[i];
    execvp(python, args);
    fprintf(stderr, "%s get: cannot run %s: %s (it needs Python 3 and numpy: apt-get install python3 python3-numpy)\n",
            prog, python, strerror(errno));
    free(args);
    return EXIT_MODEL;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "get")) return get_tool(argv + 1);
    if (argc > 1 && !strcmp(argv[1], "spm-encode")) return spm_tool(argc - 1, argv + 1, 1);
    if (argc > 1 && !strcmp(argv[1], "spm-decode")) return spm_tool(argc - 1, argv + 1, 0);
    cli_options o;
    parse_args(argc, argv, &o);
    if (o.list_models) return list_models();
    refuse_input_as_output(&o);

    char model_buf[PATH_MAX];
    const char *model_dir = resolve_model(o.model, model_buf, sizeof model_buf);
    fanyi_error err = {0};
    fanyi_model *model = fanyi_load(model_dir, &err);
    if (!model) {
        fprintf(stderr, "%s: %s\n", prog, err.message);
        return EXIT_MODEL;
    }
    if (o.input == IO_TEXT && !fanyi_has_tokenizer(model)) {
        fprintf(stderr, "%s: model %s has no tokenizer files; use --input ids\n", prog, model_dir);
        fanyi_free(model);
        return EXIT_USAGE;
    }
    if (fanyi_check_options(model, &o.opts, &err)) {
        fprintf(stderr, "%s: %s\nTry '%s --help'.\n", prog, err.message, prog);
        fanyi_free(model);
        return EXIT_USAGE;
    }
    output_file output;
    if (output_open(&output, o.output_file)) {
        fanyi_free(model);
        return EXIT_MODEL;
    }
    FILE *out = output.f;
    const char *out_name = output.name;
    long index = 0;
    int rc = 0;
    progress prog_state = {0};
    prog_state.enabled = o.progress || (o.n_files > 0 && isatty(2));
    prog_state.start = prog_state.last = now_seconds();
    for (int i = 0; i < o.n_files; i++) {
        struct stat st;
        if (strcmp(o.files[i], "-") && stat(o.files[i], &st) == 0 && S_ISREG(st.st_mode))
            prog_state.bytes_total += (double)st.st_size;
    }
    if (o.n_files == 0) rc = translate_stream(model, &o, 0, "standard input", out, out_name, &index, &prog_state);
    for (int i = 0; !rc && i < o.n_files; i++) {
        const char *name = o.files[i];
        if (!strcmp(name, "-")) {
            rc = translate_stream(model, &o, 0, "standard input", out, out_name, &index, &prog_state);
            continue;
        }
        int fd = open(name, O_RDONLY);
        if (fd < 0) {
            fprintf(stderr, "%s: %s: %s\n", prog, name, strerror(errno));
            rc = EXIT_MODEL;
            break;
        }
        rc = translate_stream(model, &o, fd, name, out, out_name, &index, &prog_state);
        close(fd);
    }
    progress_show(&prog_state, 1);
    rc = output_close(&output, rc);
    fanyi_free(model);
    return rc;
}
