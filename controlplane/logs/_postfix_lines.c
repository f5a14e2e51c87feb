/*
 * Postfix log lines parsed in C: the same events as controlplane/logs/postfix.py, for the lines
 * a busy log is made of (deliveries, queueing, message-ids, clients, removals, refusals), at a
 * fraction of the regular expressions' cost; and, in the ingest's scan, Dovecot's successful
 * login lines as controlplane/logs/dovecot.py reads them.
 *
 * The Python parsers stay the reference. This one answers only where it is certain to give what
 * they give: a line that is not plain printable ASCII, a syslog prefix it does not recognise, a
 * refusal whose message is longer than MAX_REFUSAL_LENGTH, and the rarer kinds (SASL failures,
 * expiries, failed logins) go to Python; the Postfix parser is handed at `configure`.
 * tests/unit/logs/test_compiled_postfix.py holds the two to the same answers over the fixtures,
 * a generated log and mutated lines.
 *
 * Python's regular expressions on str are Unicode-aware (\d, \s and \w match beyond ASCII):
 * keeping to printable ASCII is what makes the byte-wise rules below exact.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <structmember.h>
#include <string.h>

/* setup.py defines it as the SHA-256 of this file: compiled.py loads no build of another version. */
#ifndef SOURCE_HASH
#define SOURCE_HASH ""
#endif

/* Set by configure(): the event class, the (cached) syslog_time function, the Python parser. */
static PyObject *event_class;
static PyObject *syslog_time;
static PyObject *python_parser;

/* Set by configure_logins(): Dovecot's LoginEvent class, and its service names by process. */
static PyObject *login_class;
static const char *const login_processes[] = {"imap-login", "pop3-login", "submission-login", "managesieve-login"};
static const char *const login_service_names[] = {"imap", "pop3", "smtp", "sieve"};
#define LOGIN_PROCESS_COUNT 4
static PyObject *login_services[LOGIN_PROCESS_COUNT];

/* The last syslog stamp's moment: a log has many lines to a second. */
static PyObject *stamp_reference;
static PyObject *stamp_moment;
static char stamp_text[32];
static Py_ssize_t stamp_length = -1;

enum { KIND_CONNECT_CLIENT, KIND_MESSAGE_ID, KIND_QUEUED, KIND_REMOVED, KIND_DELIVERY, KIND_REJECT, KIND_COUNT };
static const char *const kind_names[KIND_COUNT] = {
    "connect-client", "message-id", "queued", "removed", "delivery", "reject",
};
static PyObject *kinds[KIND_COUNT];

/* Values that recur on every line (programs, statuses) are made once. */
static const char *const common_names[] = {
    "smtpd", "cleanup", "qmgr", "lmtp", "smtp", "virtual", "local", "pipe", "error", "discard",
    "sent", "deferred", "bounced", "2.0.0",
};
#define COMMON_COUNT (sizeof(common_names) / sizeof(common_names[0]))
#define COMMON_LONGEST 8 /* "deferred"; longer text is never one of them */
static PyObject *common[COMMON_COUNT];
static PyObject *empty;
static PyObject *status_refused;

/* The Python parser decides; a sentinel distinct from None and from any event. */
#define UNDECIDED ((PyObject *)&undecided_marker)
static int undecided_marker;
/* What scan() answers for smtpd's "connect from" and "disconnect from" lines (passed over
 * unparsed) and for the lines the Python path must read from the start; module attributes. */
static PyObject *passed_over;
static PyObject *undecided;
static PyObject *one_day;
static const char *const month_names[12] = {
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

typedef struct {
    const char *start;
    Py_ssize_t length;
} Span;

static int starts_with(Span text, const char *prefix)
{
    size_t length = strlen(prefix);
    return (size_t)text.length >= length && memcmp(text.start, prefix, length) == 0;
}

static int equals(Span text, const char *word)
{
    size_t length = strlen(word);
    return (size_t)text.length == length && memcmp(text.start, word, length) == 0;
}

static Py_ssize_t find(Span text, const char *needle)
{
    Py_ssize_t length = (Py_ssize_t)strlen(needle);
    for (Py_ssize_t at = 0; at + length <= text.length; at++) {
        if (text.start[at] == needle[0] && memcmp(text.start + at, needle, length) == 0)
            return at;
    }
    return -1;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_lower(char c) { return c >= 'a' && c <= 'z'; }
static int is_upper(char c) { return c >= 'A' && c <= 'Z'; }
static int is_word(char c) { return is_digit(c) || is_lower(c) || is_upper(c) || c == '_'; }
static int is_class_digit(char c) { return c == '2' || c == '4' || c == '5'; }

static PyObject *new_string(Span text)
{
    for (size_t i = 0; text.length <= COMMON_LONGEST && i < COMMON_COUNT; i++) {
        if (equals(text, common_names[i])) {
            Py_INCREF(common[i]);
            return common[i];
        }
    }
    PyObject *string = PyUnicode_New(text.length, 127);
    if (string != NULL)
        memcpy(PyUnicode_1BYTE_DATA(string), text.start, (size_t)text.length);
    return string;
}

/* str.strip() (printable ASCII has only the space to strip), then "<x>" -> "x". */
static Span strip_brackets(Span value)
{
    while (value.length > 0 && value.start[0] == ' ') {
        value.start++;
        value.length--;
    }
    while (value.length > 0 && value.start[value.length - 1] == ' ')
        value.length--;
    if (value.length >= 1 && value.start[0] == '<' && value.start[value.length - 1] == '>') {
        value.start++;
        value.length = value.length >= 2 ? value.length - 2 : 0;
    }
    return value;
}

/* The end of a value at `at` by the patterns' rule (<[^>]*>|[^STOPS]*): a bracketed value when
 * a '>' closes it, else the run of characters up to the first of `stops`. */
static Py_ssize_t value_end(Span text, Py_ssize_t at, const char *stops)
{
    if (at < text.length && text.start[at] == '<') {
        const char *close = memchr(text.start + at + 1, '>', (size_t)(text.length - at - 1));
        if (close != NULL)
            return close - text.start + 1;
    }
    while (at < text.length && strchr(stops, text.start[at]) == NULL)
        at++;
    return at;
}

/* The key at `at` and its value, by _ATTRIBUTE's rule after the (?:^|, ) part:
 * ([a-z_]+)=(<[^>]*>|[^,]*). Returns the end of the match, or -1. */
static Py_ssize_t match_attribute(Span text, Py_ssize_t at, Span *key, Span *value)
{
    Py_ssize_t cursor = at;
    while (cursor < text.length && (is_lower(text.start[cursor]) || text.start[cursor] == '_'))
        cursor++;
    if (cursor == at || cursor >= text.length || text.start[cursor] != '=')
        return -1;
    key->start = text.start + at;
    key->length = cursor - at;
    Py_ssize_t end = value_end(text, cursor + 1, ",");
    value->start = text.start + cursor + 1;
    value->length = end - cursor - 1;
    return end;
}

/* A key's value as dict(_ATTRIBUTE.findall(text)).get(key) gives it: NULL start when absent. */
#define ABSENT ((Span){NULL, 0})

static int is_absent(Span value) { return value.start == NULL; }

static Span or_empty(Span value) { return is_absent(value) ? (Span){"", 0} : value; }

/* The values of `keys` in dict(_ATTRIBUTE.findall(text)), later keys winning as in the dict,
 * into `values` (ABSENT for a key not there); no dict is made. */
static void find_attributes(Span text, const char *const *keys, Span *values, int count)
{
    for (int i = 0; i < count; i++)
        values[i] = ABSENT;
    Py_ssize_t at = 0;
    while (at <= text.length) {
        Span key, value;
        Py_ssize_t end = -1;
        if (at == 0)
            end = match_attribute(text, 0, &key, &value);
        if (end < 0 && at + 1 < text.length && text.start[at] == ',' && text.start[at + 1] == ' ')
            end = match_attribute(text, at + 2, &key, &value);
        if (end < 0) {
            at++;
            continue;
        }
        for (int i = 0; i < count; i++) {
            if (equals(key, keys[i]))
                values[i] = value;
        }
        at = end;
    }
}

/* _CLIENT: ^([^\[\s]*)\[([^\]]*)\] -> name and ip, or two empty spans. */
static void split_client(Span text, Span *name, Span *ip)
{
    Span nothing = {"", 0};
    *name = nothing;
    *ip = nothing;
    Py_ssize_t at = 0;
    while (at < text.length && text.start[at] != '[' && text.start[at] != ' ')
        at++;
    if (at >= text.length || text.start[at] != '[')
        return;
    const char *close = memchr(text.start + at + 1, ']', (size_t)(text.length - at - 1));
    if (close == NULL)
        return;
    name->start = text.start;
    name->length = at;
    ip->start = text.start + at + 1;
    ip->length = close - ip->start;
}

static int two_digits(const char *text) { return (text[0] - '0') * 10 + (text[1] - '0'); }

/* syslog_time's usual answer: the stamp in the reference's year, when that is a real moment no
 * more than a day after the reference. NULL (no exception set) for every other case, which the
 * Python syslog_time then decides. */
static PyObject *usual_moment(Span month, Span day, Span clock, PyObject *reference)
{
    if (!PyDateTime_Check(reference))
        return NULL;
    int number = 0;
    for (int i = 0; i < 12; i++) {
        if (memcmp(month.start, month_names[i], 3) == 0)
            number = i + 1;
    }
    if (number == 0)
        return NULL;
    int day_number = day.length == 1 ? day.start[0] - '0' : two_digits(day.start);
    PyObject *moment = PyDateTimeAPI->DateTime_FromDateAndTime(
        PyDateTime_GET_YEAR(reference), number, day_number, two_digits(clock.start), two_digits(clock.start + 3),
        two_digits(clock.start + 6), 0, PyDateTime_TimeZone_UTC, PyDateTimeAPI->DateTimeType);
    if (moment == NULL) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *ahead = PyNumber_Subtract(moment, reference);
    int too_far = ahead == NULL ? -1 : PyObject_RichCompareBool(ahead, one_day, Py_GT);
    Py_XDECREF(ahead);
    if (too_far != 0) {
        PyErr_Clear();
        Py_DECREF(moment);
        return NULL;
    }
    return moment;
}

/* The moment of a "Mon DD HH:MM:SS" stamp, by syslog_time's rules (the year from the reference). */
static PyObject *moment_of(Span month, Span day, Span clock, PyObject *reference)
{
    char key[32];
    Py_ssize_t length = 0;
    memcpy(key + length, month.start, (size_t)month.length);
    length += month.length;
    key[length++] = ' ';
    memcpy(key + length, day.start, (size_t)day.length);
    length += day.length;
    key[length++] = ' ';
    memcpy(key + length, clock.start, (size_t)clock.length);
    length += clock.length;
    if (reference == stamp_reference && length == stamp_length && memcmp(key, stamp_text, (size_t)length) == 0) {
        Py_INCREF(stamp_moment);
        return stamp_moment;
    }
    PyObject *moment = usual_moment(month, day, clock, reference);
    if (moment == NULL) {
        /* The year before, a stamp that is no date, or no month at all: syslog_time decides. */
        PyObject *month_text = new_string(month);
        PyObject *day_text = month_text == NULL ? NULL : new_string(day);
        PyObject *clock_text = day_text == NULL ? NULL : new_string(clock);
        if (clock_text != NULL)
            moment = PyObject_CallFunctionObjArgs(syslog_time, month_text, day_text, clock_text, reference, NULL);
        Py_XDECREF(month_text);
        Py_XDECREF(day_text);
        Py_XDECREF(clock_text);
    }
    if (moment == NULL)
        return NULL;
    Py_INCREF(reference);
    Py_INCREF(moment);
    Py_XSETREF(stamp_reference, reference);
    Py_XSETREF(stamp_moment, moment);
    memcpy(stamp_text, key, (size_t)length);
    stamp_length = length;
    return moment;
}

typedef struct {
    PyObject *kind, *time, *program, *queue_id, *client_name, *client_ip, *sasl_user, *helo,
        *message_id, *sender, *size, *recipient, *orig_to, *relay, *dsn, *status, *detail;
} Fields;
#define FIELD_COUNT 17
static const char *const field_names[FIELD_COUNT] = {
    "kind", "time", "program", "queue_id", "client_name", "client_ip", "sasl_user", "helo", "message_id",
    "sender", "size", "recipient", "orig_to", "relay", "dsn", "status", "detail",
};
/* Where each field's slot lies in an event, when the class is the slotted dataclass configure()
 * checks for; -1 makes events by calling the class. */
static Py_ssize_t slot_offsets[FIELD_COUNT] = {-1};

static void release(Fields *fields)
{
    PyObject **each = (PyObject **)fields;
    for (int i = 0; i < FIELD_COUNT; i++)
        Py_XDECREF(each[i]);
}

/* PostfixEvent(...) with every field given in field_names' order (postfix.py checks that the
 * class's fields are these, in this order, before it configures the parser). */
static PyObject *event(Fields *fields)
{
    PyObject **each = (PyObject **)fields;
    for (int i = 0; i < FIELD_COUNT; i++) {
        if (each[i] == NULL) {
            release(fields);
            return NULL;
        }
    }
    if (slot_offsets[0] < 0) {
        PyObject *made = PyObject_Vectorcall(event_class, each, FIELD_COUNT, NULL);
        release(fields);
        return made;
    }
    /* What the dataclass's __init__ does, without running it: each field into its slot. */
    PyTypeObject *type = (PyTypeObject *)event_class;
    PyObject *made = type->tp_alloc(type, 0);
    if (made == NULL) {
        release(fields);
        return NULL;
    }
    for (int i = 0; i < FIELD_COUNT; i++)
        *(PyObject **)((char *)made + slot_offsets[i]) = each[i]; /* the slot takes the reference */
    return made;
}

static PyObject *text_or_empty(Span value)
{
    if (value.length == 0) {
        Py_INCREF(empty);
        return empty;
    }
    return new_string(value);
}

/* Fields with their defaults (None or ""), holding new references. */
static void defaults(Fields *fields, int kind, PyObject *moment, Span program, Span queue_id)
{
    Py_INCREF(kinds[kind]);
    fields->kind = kinds[kind];
    Py_INCREF(moment);
    fields->time = moment;
    fields->program = new_string(program);
    fields->queue_id = new_string(queue_id);
    PyObject **text_fields[] = {&fields->client_name, &fields->client_ip, &fields->sasl_user,
                                &fields->helo, &fields->message_id, &fields->recipient,
                                &fields->orig_to, &fields->relay, &fields->dsn, &fields->status,
                                &fields->detail};
    for (size_t i = 0; i < sizeof(text_fields) / sizeof(text_fields[0]); i++) {
        Py_INCREF(empty);
        *text_fields[i] = empty;
    }
    Py_INCREF(Py_None);
    fields->sender = Py_None;
    Py_INCREF(Py_None);
    fields->size = Py_None;
}

static void replace(PyObject **field, PyObject *value)
{
    Py_XDECREF(*field);
    *field = value;
}

/* _STATUS.search(rest): status=([a-z]+)(?: \((.*)\))?$ at its leftmost place. */
static Py_ssize_t find_status(Span rest, Span *status, Span *detail, int *has_detail)
{
    for (Py_ssize_t at = 0; at + 7 <= rest.length; at++) {
        if (memcmp(rest.start + at, "status=", 7) != 0)
            continue;
        Py_ssize_t cursor = at + 7;
        while (cursor < rest.length && is_lower(rest.start[cursor]))
            cursor++;
        if (cursor == at + 7)
            continue;
        Span tail = {rest.start + cursor, rest.length - cursor};
        status->start = rest.start + at + 7;
        status->length = cursor - at - 7;
        if (tail.length == 0) {
            *has_detail = 0;
            return at;
        }
        if (tail.length >= 3 && tail.start[0] == ' ' && tail.start[1] == '(' && tail.start[tail.length - 1] == ')') {
            detail->start = tail.start + 2;
            detail->length = tail.length - 3;
            *has_detail = 1;
            return at;
        }
    }
    return -1;
}

/* Refusals are read only from syslog messages (what follows "program[pid]: ") this long: the
 * tail's matcher below remembers each position of it, and the Python parser takes the rare
 * longer one. */
#define MAX_REFUSAL_LENGTH 4096
#define TAIL_UNKNOWN (-2)

/* _REJECT's tail from `at` to the end: (?: [a-z_]+=(?:<[^>]*>|\S*))*\s*$, trying each choice in
 * the order the regular expression does (one more repetition before none, the bracketed value
 * before the bare one). Over printable ASCII \s is the space alone, so a bare value is the whole
 * run up to a space: any shorter one leaves a character that neither a repetition nor the end can
 * take. Returns where the last repetition ends (the tail group's end) or -1 for no match; `ends`
 * remembers each position's answer, as the answer depends on the position alone. */
static Py_ssize_t match_tail(Span text, Py_ssize_t at, short *ends)
{
    if (ends[at] != TAIL_UNKNOWN)
        return ends[at];
    Py_ssize_t found = -1;
    if (at < text.length && text.start[at] == ' ') {
        Py_ssize_t cursor = at + 1;
        while (cursor < text.length && (is_lower(text.start[cursor]) || text.start[cursor] == '_'))
            cursor++;
        if (cursor > at + 1 && cursor < text.length && text.start[cursor] == '=') {
            cursor++;
            if (cursor < text.length && text.start[cursor] == '<') {
                const char *close = memchr(text.start + cursor + 1, '>', (size_t)(text.length - cursor - 1));
                if (close != NULL)
                    found = match_tail(text, close - text.start + 1, ends);
            }
            if (found < 0) {
                Py_ssize_t bare = cursor;
                while (bare < text.length && text.start[bare] != ' ')
                    bare++;
                found = match_tail(text, bare, ends);
            }
        }
    }
    if (found < 0) {
        found = at;
        for (Py_ssize_t i = at; i < text.length; i++) {
            if (text.start[i] != ' ') {
                found = -1;
                break;
            }
        }
    }
    ends[at] = (short)found;
    return found;
}

/* The values of `keys` among the tail's attributes, as _TAIL_ATTRIBUTE.findall gives them
 * ([a-z_]+)=(<[^>]*>|\S*), later keys winning as in the dict made of them (ABSENT when not there). */
static void find_tail_attributes(Span tail, const char *const *keys, Span *values, int count)
{
    for (int i = 0; i < count; i++)
        values[i] = ABSENT;
    Py_ssize_t at = 0;
    while (at < tail.length) {
        Py_ssize_t cursor = at;
        while (cursor < tail.length && (is_lower(tail.start[cursor]) || tail.start[cursor] == '_'))
            cursor++;
        if (cursor == at || cursor >= tail.length || tail.start[cursor] != '=') {
            /* No match starts anywhere in this run of key characters either. */
            at = cursor > at ? cursor : at + 1;
            continue;
        }
        Span key = {tail.start + at, cursor - at};
        Py_ssize_t end = value_end(tail, cursor + 1, " ");
        for (int i = 0; i < count; i++) {
            if (equals(key, keys[i]))
                values[i] = (Span){tail.start + cursor + 1, end - cursor - 1};
        }
        at = end;
    }
}

/* One to three digits, as \d{1,3} takes them when a `follower` must come next (0: anything may).
 * Returns how many, or 0 when the rule fails. */
static Py_ssize_t few_digits(Span text, Py_ssize_t at, char follower)
{
    Py_ssize_t count = 0;
    while (count < 3 && at + count < text.length && is_digit(text.start[at + count]))
        count++;
    if (count == 0)
        return 0;
    if (follower != 0 && (at + count >= text.length || text.start[at + count] != follower))
        return 0;
    return count;
}

/* [245]\.\d{1,3}\.\d{1,3} at `at`, followed by `follower` unless it is 0: its length, or 0. */
static Py_ssize_t enhanced_code(Span text, Py_ssize_t at, char follower)
{
    if (at + 2 > text.length || !is_class_digit(text.start[at]) || text.start[at + 1] != '.')
        return 0;
    Py_ssize_t first = few_digits(text, at + 2, '.');
    if (first == 0)
        return 0;
    Py_ssize_t second = few_digits(text, at + 3 + first, follower);
    return second == 0 ? 0 : 3 + first + second;
}

/* From the client's ": " at `*at`: the first ';' after which the tail matches, left in `*at`, and
 * the tail's end; -1 when there is none. */
static Py_ssize_t find_detail_end(Span text, Py_ssize_t *at, short *ends)
{
    for (Py_ssize_t cursor = *at + 2; cursor < text.length; cursor++) {
        if (text.start[cursor] == ';') {
            Py_ssize_t end = match_tail(text, cursor + 1, ends);
            if (end >= 0) {
                *at = cursor;
                return end;
            }
        }
    }
    return -1;
}

/* _parse_reject: `text` is what follows "NOQUEUE: " (after queueing, the line's "reject: ..."
 * with cleanup's "milter-" taken off); `queue_id` has no length for NOQUEUE. Py_None when the
 * refusal's pattern does not match, as in Python. */
static PyObject *parse_reject(PyObject *moment, Span program, Span text, Span queue_id)
{
    Py_ssize_t at = starts_with(text, "milter-") ? 7 : 0;
    Span rest = {text.start + at, text.length - at};
    Span action;
    if (starts_with(rest, "reject: "))
        action.length = 6;
    else if (starts_with(rest, "discard: "))
        action.length = 7;
    else if (starts_with(rest, "hold: "))
        action.length = 4;
    else
        return Py_None;
    action.start = rest.start;
    at += action.length + 2;
    /* The stage: [A-Z]+(?:[- ][A-Z]+)*, then " from ". */
    Py_ssize_t stage_start = at;
    while (at < text.length && is_upper(text.start[at])) {
        while (at < text.length && is_upper(text.start[at]))
            at++;
        if (at + 1 < text.length && (text.start[at] == '-' || text.start[at] == ' ') && is_upper(text.start[at + 1]))
            at++;
    }
    Span stage = {text.start + stage_start, at - stage_start};
    Span after_stage = {text.start + at, text.length - at};
    if (stage.length == 0 || !starts_with(after_stage, " from "))
        return Py_None;
    at += 6;
    /* The client: [^:\[]*\[[^\]]*\] (a name and an address, which holds ':' when it is IPv6)
     * or else [^:]*, then ": " and the detail: .*? up to the first ';' the tail matches after. */
    short ends[MAX_REFUSAL_LENGTH + 1];
    for (Py_ssize_t i = at; i <= text.length; i++)
        ends[i] = TAIL_UNKNOWN;
    Py_ssize_t client_start = at, detail_start = -1, tail_end = -1;
    while (at < text.length && text.start[at] != ':' && text.start[at] != '[')
        at++;
    if (at < text.length && text.start[at] == '[') {
        const char *close = memchr(text.start + at + 1, ']', (size_t)(text.length - at - 1));
        if (close != NULL) {
            at = close - text.start + 1;
            if (at + 1 < text.length && text.start[at] == ':' && text.start[at + 1] == ' ') {
                detail_start = at + 2;
                tail_end = find_detail_end(text, &at, ends);
            }
        }
    }
    if (tail_end < 0) {
        at = client_start;
        while (at < text.length && text.start[at] != ':')
            at++;
        if (at + 1 >= text.length || text.start[at + 1] != ' ')
            return Py_None;
        detail_start = at + 2;
        tail_end = find_detail_end(text, &at, ends);
        if (tail_end < 0)
            return Py_None;
    }
    Span client = {text.start + client_start, detail_start - 2 - client_start};
    Span detail = {text.start + detail_start, at - detail_start};
    Span tail = {text.start + at + 1, tail_end - at - 1};

    Fields fields;
    defaults(&fields, KIND_REJECT, moment, program, queue_id);
    if (queue_id.length == 0) {
        Py_INCREF(Py_None);
        replace(&fields.queue_id, Py_None);
    }
    Span name, ip;
    split_client(client, &name, &ip);
    replace(&fields.client_name, text_or_empty(name));
    replace(&fields.client_ip, text_or_empty(ip));
    /* The dsn: _REPLY_CODE's enhanced code, ^[245]\d\d(?: ([245]\.\d{1,3}\.\d{1,3}))?, or without a
     * reply code _ENHANCED_CODE's, ^([245]\.\d{1,3}\.\d{1,3}) (a space after it). */
    Span enhanced = {"", 0};
    if (detail.length >= 3 && is_class_digit(detail.start[0]) && is_digit(detail.start[1]) &&
        is_digit(detail.start[2])) {
        if (detail.length > 4 && detail.start[3] == ' ') {
            enhanced.start = detail.start + 4;
            enhanced.length = enhanced_code(detail, 4, 0);
        }
    } else if (detail.length > 0) {
        enhanced.start = detail.start;
        enhanced.length = enhanced_code(detail, 0, ' ');
    }
    replace(&fields.dsn, text_or_empty(enhanced));
    if (equals(action, "reject")) {
        Py_INCREF(status_refused);
        replace(&fields.status, status_refused);
    } else {
        replace(&fields.status, new_string(action));
    }
    replace(&fields.detail, text_or_empty(detail));
    static const char *const tail_keys[] = {"helo", "to", "from"};
    Span tail_values[3];
    find_tail_attributes(tail, tail_keys, tail_values, 3);
    replace(&fields.helo, text_or_empty(strip_brackets(or_empty(tail_values[0]))));
    replace(&fields.recipient, text_or_empty(strip_brackets(or_empty(tail_values[1]))));
    if (!is_absent(tail_values[2]))
        replace(&fields.sender, text_or_empty(strip_brackets(tail_values[2])));
    return event(&fields);
}

static PyObject *parse_rest(PyObject *moment, Span program, Span message)
{
    Span no_queue_id = {"", 0};
    if (starts_with(message, "NOQUEUE:")) {
        if (message.length > MAX_REFUSAL_LENGTH)
            return UNDECIDED;
        if (!starts_with(message, "NOQUEUE: "))
            return Py_None;
        Span text = {message.start + 9, message.length - 9};
        return parse_reject(moment, program, text, no_queue_id);
    }
    if (equals(program, "smtpd") && starts_with(message, "warning: ") && find(message, "authentication failed") >= 0)
        return UNDECIDED;
    /* _QUEUED: ^([0-9A-F]{6,}|[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10,}): (.*)$ */
    Py_ssize_t id_length = 0;
    while (id_length < message.length && (is_digit(message.start[id_length]) ||
                                          (message.start[id_length] >= 'A' && message.start[id_length] <= 'F')))
        id_length++;
    if (!(id_length >= 6 && id_length + 1 < message.length && message.start[id_length] == ':' &&
          message.start[id_length + 1] == ' ')) {
        id_length = 0;
        while (id_length < message.length && (is_digit(message.start[id_length]) ||
                                              ((is_upper(message.start[id_length]) || is_lower(message.start[id_length])) &&
                                               strchr("AEIOUaeiou", message.start[id_length]) == NULL)))
            id_length++;
        if (!(id_length >= 10 && id_length + 1 < message.length && message.start[id_length] == ':' &&
              message.start[id_length + 1] == ' '))
            return Py_None;
    }
    Span queue_id = {message.start, id_length};
    Span rest = {message.start + id_length + 2, message.length - id_length - 2};
    Fields fields;

    if (equals(program, "smtpd") && starts_with(rest, "client=")) {
        static const char *const keys[] = {"client", "sasl_username"};
        Span values[2];
        find_attributes(rest, keys, values, 2);
        Span name, ip;
        split_client(or_empty(values[0]), &name, &ip);
        defaults(&fields, KIND_CONNECT_CLIENT, moment, program, queue_id);
        replace(&fields.client_name, text_or_empty(name));
        replace(&fields.client_ip, text_or_empty(ip));
        replace(&fields.sasl_user, text_or_empty(or_empty(values[1])));
        return event(&fields);
    }
    if (equals(program, "cleanup") && starts_with(rest, "message-id=")) {
        Span value = {rest.start + 11, rest.length - 11};
        defaults(&fields, KIND_MESSAGE_ID, moment, program, queue_id);
        replace(&fields.message_id, text_or_empty(strip_brackets(value)));
        return event(&fields);
    }
    if (equals(program, "qmgr")) {
        if (equals(rest, "removed")) {
            defaults(&fields, KIND_REMOVED, moment, program, queue_id);
            return event(&fields);
        }
        if (!starts_with(rest, "from="))
            return Py_None;
        if (find(rest, ", status=expired") >= 0)
            return UNDECIDED;
        static const char *const keys[] = {"size", "from"};
        Span values[2];
        find_attributes(rest, keys, values, 2);
        Span size = or_empty(values[0]);
        int digits = size.length > 0 && size.length < 19;
        for (Py_ssize_t i = 0; digits && i < size.length; i++)
            digits = is_digit(size.start[i]);
        defaults(&fields, KIND_QUEUED, moment, program, queue_id);
        replace(&fields.sender, text_or_empty(strip_brackets(or_empty(values[1]))));
        if (digits) {
            char number[20];
            memcpy(number, size.start, (size_t)size.length);
            number[size.length] = '\0';
            replace(&fields.size, PyLong_FromString(number, NULL, 10));
        }
        return event(&fields);
    }
    if (starts_with(rest, "to=") &&
        (equals(program, "lmtp") || equals(program, "smtp") || equals(program, "virtual") ||
         equals(program, "local") || equals(program, "pipe") || equals(program, "error") ||
         equals(program, "discard"))) {
        Span status, detail = {"", 0};
        int has_detail = 0;
        Py_ssize_t at = find_status(rest, &status, &detail, &has_detail);
        if (at < 0)
            return Py_None;
        Span before = {rest.start, at};
        static const char *const keys[] = {"to", "orig_to", "relay", "dsn"};
        Span values[4];
        find_attributes(before, keys, values, 4);
        defaults(&fields, KIND_DELIVERY, moment, program, queue_id);
        replace(&fields.recipient, text_or_empty(strip_brackets(or_empty(values[0]))));
        replace(&fields.orig_to, text_or_empty(strip_brackets(or_empty(values[1]))));
        replace(&fields.relay, text_or_empty(or_empty(values[2])));
        replace(&fields.dsn, text_or_empty(or_empty(values[3])));
        replace(&fields.status, new_string(status));
        replace(&fields.detail, text_or_empty(detail));
        return event(&fields);
    }
    if ((equals(program, "smtpd") && starts_with(rest, "reject: ")) ||
        (equals(program, "cleanup") && starts_with(rest, "milter-reject: "))) {
        if (message.length > MAX_REFUSAL_LENGTH)
            return UNDECIDED;
        /* As "NOQUEUE: " + rest.removeprefix("milter-"), with the queue ID kept. */
        Span text = rest;
        if (starts_with(text, "milter-")) {
            text.start += 7;
            text.length -= 7;
        }
        return parse_reject(moment, program, text, queue_id);
    }
    return Py_None;
}


/* Where what follows a stamp's seconds begins: after (?:\.\d+)? and one space; -1 without them. */
static Py_ssize_t after_seconds(Span line, Py_ssize_t at)
{
    if (at < line.length && line.start[at] == '.') {
        Py_ssize_t fraction = ++at;
        while (at < line.length && is_digit(line.start[at]))
            at++;
        if (at == fraction)
            return -1;
    }
    if (at >= line.length || line.start[at] != ' ')
        return -1;
    return at + 1;
}

/* One of dovecot._FIELDS' values, .strip("<>")-ed. */
static Span strip_angles(Span value)
{
    while (value.length > 0 && (value.start[0] == '<' || value.start[0] == '>')) {
        value.start++;
        value.length--;
    }
    while (value.length > 0 && (value.start[value.length - 1] == '<' || value.start[value.length - 1] == '>'))
        value.length--;
    return value;
}

/* dovecot._fields: _FIELDS.finditer, (?:^|, )(user|method|rip|lip|session)=(<[^>]*>|[^,<]*), later
 * keys winning. Only user, rip and session are kept; `has_rip` says whether rip= was there. */
static void login_fields(Span text, Span *user, Span *rip, Span *session, int *has_rip)
{
    static const char *const keys[] = {"user", "method", "rip", "lip", "session"};
    Span nothing = {"", 0};
    *user = *rip = *session = nothing;
    *has_rip = 0;
    Py_ssize_t at = 0;
    while (at < text.length) {
        Py_ssize_t key_start = -1;
        int key = -1;
        /* ^ (at the start only), then ", ": the first that a key and '=' follow. */
        for (int prefix = at == 0 ? 0 : 1; key < 0 && prefix < 2; prefix++) {
            Py_ssize_t start = at + (prefix == 0 ? 0 : 2);
            if (prefix == 1 && !(at + 1 < text.length && text.start[at] == ',' && text.start[at + 1] == ' '))
                continue;
            Span rest = {text.start + start, text.length - start};
            for (int k = 0; k < 5; k++) {
                size_t length = strlen(keys[k]);
                if (starts_with(rest, keys[k]) && (Py_ssize_t)length < rest.length && rest.start[length] == '=') {
                    key = k;
                    key_start = start;
                    break;
                }
            }
        }
        if (key < 0) {
            at++;
            continue;
        }
        Py_ssize_t value_start = key_start + (Py_ssize_t)strlen(keys[key]) + 1;
        Py_ssize_t end = value_end(text, value_start, ",<");
        Span value = strip_angles((Span){text.start + value_start, end - value_start});
        if (key == 0)
            *user = value;
        else if (key == 2) {
            *rip = value;
            *has_rip = 1;
        } else if (key == 4)
            *session = value;
        at = end;
    }
}

/* dovecot.parse_dovecot_line for a successful login, from what follows the stamp (and the
 * syslog's "host dovecot[pid]: "): "imap-login: [Info: ]Login: user=<...>, ..., rip=..."; the
 * LoginEvent, or Py_None where the Python path is to decide (every other line). `line` is the
 * whole line: one naming Sieve's Junk filing is left to the ingest's check for those. */
static PyObject *parse_login(Span line, Span message, PyObject *moment)
{
    int process = -1;
    for (int i = 0; i < LOGIN_PROCESS_COUNT; i++) {
        size_t length = strlen(login_processes[i]);
        if (starts_with(message, login_processes[i]) && (Py_ssize_t)length + 2 <= message.length &&
            message.start[length] == ':' && message.start[length + 1] == ' ') {
            process = i;
            message.start += length + 2;
            message.length -= (Py_ssize_t)length + 2;
            break;
        }
    }
    if (process < 0)
        return Py_None;
    if (starts_with(message, "Info: ")) {
        message.start += 6;
        message.length -= 6;
    }
    if (!starts_with(message, "Login: ") || find(line, "stored mail into mailbox 'Junk'") >= 0)
        return Py_None;
    Span fields = {message.start + 7, message.length - 7};
    Span user, rip, session;
    int has_rip;
    login_fields(fields, &user, &rip, &session, &has_rip);
    if (user.length == 0 || !has_rip)
        return Py_None;
    PyObject *args[7] = {moment, login_services[process], new_string(user), text_or_empty(rip), Py_True, empty,
                         text_or_empty(session)};
    PyObject *made = NULL;
    if (args[2] != NULL && args[3] != NULL && args[6] != NULL)
        made = PyObject_Vectorcall(login_class, args, 7, NULL);
    Py_XDECREF(args[2]);
    Py_XDECREF(args[3]);
    Py_XDECREF(args[6]);
    return made;
}

/* A line of Dovecot's own log (log_timestamp "%Y-%m-%d %H:%M:%S "): "2026-11-25 18:57:28
 * imap-login: Info: Login: ...". Its login, or Py_None for the Python path. */
static PyObject *parse_dated_login(Span line)
{
    const char *s = line.start;
    Py_ssize_t n = line.length, at = 19;
    static const char shape[] = "dddd-dd-dd dd:dd:dd";
    if (n < 20)
        return Py_None;
    for (int i = 0; i < 19; i++) {
        if (shape[i] == 'd' ? !is_digit(s[i]) : s[i] != shape[i])
            return Py_None;
    }
    at = after_seconds(line, at);
    if (at < 0)
        return Py_None;
    Span message = {s + at, n - at};
    /* _PREFIX would take "imap-login: dovecot: ..." as a syslog host and program: Python decides. */
    const char *colon = memchr(message.start, ':', (size_t)message.length);
    if (colon != NULL && colon + 9 <= message.start + message.length && memcmp(colon + 1, " dovecot", 8) == 0)
        return Py_None;
    PyObject *moment = PyDateTimeAPI->DateTime_FromDateAndTime(
        (s[0] - '0') * 1000 + (s[1] - '0') * 100 + two_digits(s + 2), two_digits(s + 5), two_digits(s + 8),
        two_digits(s + 11), two_digits(s + 14), two_digits(s + 17), 0, PyDateTime_TimeZone_UTC,
        PyDateTimeAPI->DateTimeType);
    if (moment == NULL) {
        PyErr_Clear();
        return Py_None;
    }
    PyObject *login = parse_login(line, message, moment);
    Py_DECREF(moment);
    return login;
}

/* What makes ingest._LineReader._read_other do something with a Dovecot syslog line, which it
 * is given when the scan answers Py_None: a login process's line (dovecot._PREFIX; the mark is
 * looked for in the whole line, host and program included), a Junk filing, an auth verdict,
 * the SMTP dialogue's mark, and the marks that keep a line as not understood
 * (ingest._MEANINGFUL; "auth failed" is within "auth"). A line with none of them is passed
 * over: most are a session's end ("imap(user)<pid><session>: Disconnected: Logged out ..."),
 * one for every login, which went through every parser of that path for nothing. */
static const char *const dovecot_marks[] = {
    "-login: ", "stored mail into mailbox 'Junk'", "auth", "]: <", "]: >", "NOQUEUE:", " to=<", " status=", "Login: ",
};
#define DOVECOT_MARK_COUNT (sizeof dovecot_marks / sizeof *dovecot_marks)

static int stores_nothing(Span line)
{
    for (size_t i = 0; i < DOVECOT_MARK_COUNT; i++) {
        if (find(line, dovecot_marks[i]) >= 0)
            return 0;
    }
    return 1;
}

/* _SYSLOG's prefix, then the message. With `edges` (the ingest's scan), smtpd's connect and
 * disconnect lines (what ingest._SESSION_EDGE matches) answer passed_over before anything else
 * is worked out, and Dovecot's lines ("host dovecot[pid]: ...") their login or Py_None. */
static PyObject *parse_line(Span line, PyObject *reference, int edges)
{
    const char *s = line.start;
    Py_ssize_t n = line.length, at = 0;
    if (n < 3 || !is_upper(s[0]) || !is_lower(s[1]) || !is_lower(s[2]))
        return UNDECIDED;
    Span month = {s, 3};
    at = 3;
    Py_ssize_t spaces = at;
    while (at < n && s[at] == ' ')
        at++;
    if (at == spaces)
        return UNDECIDED;
    Py_ssize_t day_start = at;
    while (at < n && at - day_start < 2 && is_digit(s[at]))
        at++;
    if (at == day_start || at >= n || s[at] != ' ')
        return UNDECIDED;
    Span day = {s + day_start, at - day_start};
    at++;
    if (at + 8 > n || !is_digit(s[at]) || !is_digit(s[at + 1]) || s[at + 2] != ':' || !is_digit(s[at + 3]) ||
        !is_digit(s[at + 4]) || s[at + 5] != ':' || !is_digit(s[at + 6]) || !is_digit(s[at + 7]))
        return UNDECIDED;
    Span clock = {s + at, 8};
    at += 8;
    at = after_seconds(line, at);
    if (at < 0)
        return UNDECIDED;
    Py_ssize_t host = at;
    while (at < n && s[at] != ' ')
        at++;
    if (at == host || at >= n)
        return UNDECIDED;
    at++;
    Py_ssize_t program_start = at;
    while (at < n && (is_word(s[at]) || s[at] == '.' || s[at] == '/' || s[at] == '-'))
        at++;
    if (at == program_start)
        return UNDECIDED;
    Span full_program = {s + program_start, at - program_start};
    int has_pid = 0;
    if (at < n && s[at] == '[') {
        Py_ssize_t pid = ++at;
        while (at < n && is_digit(s[at]))
            at++;
        if (at == pid || at >= n || s[at] != ']')
            return UNDECIDED;
        at++;
        has_pid = 1;
    }
    if (at + 2 > n || s[at] != ':' || s[at + 1] != ' ')
        return UNDECIDED;
    at += 2;
    if (edges && has_pid && full_program.length >= 13 && starts_with(full_program, "postfix") &&
        memcmp(full_program.start + full_program.length - 6, "/smtpd", 6) == 0) {
        Span message = {s + at, n - at};
        if (starts_with(message, "connect from ") || starts_with(message, "disconnect from ")) {
            Py_INCREF(passed_over);
            return passed_over;
        }
    }
    int dovecot = edges && login_class != NULL && equals(full_program, "dovecot");
    if (!dovecot && !starts_with(full_program, "postfix"))
        return Py_None;
    if (dovecot && stores_nothing(line)) {
        Py_INCREF(passed_over);
        return passed_over;
    }
    PyObject *moment = moment_of(month, day, clock, reference);
    if (moment == NULL)
        return NULL;
    if (moment == Py_None) {
        Py_DECREF(moment);
        return Py_None;
    }
    if (dovecot) {
        Span message = {s + at, n - at};
        PyObject *login = parse_login(line, message, moment);
        Py_DECREF(moment);
        return login;
    }
    Span program = full_program;
    for (Py_ssize_t i = full_program.length; i > 0; i--) {
        if (full_program.start[i - 1] == '/') {
            program.start = full_program.start + i;
            program.length = full_program.length - i;
            break;
        }
    }
    Span message = {s + at, n - at};
    PyObject *parsed = parse_rest(moment, program, message);
    Py_DECREF(moment);
    return parsed;
}

static PyObject *parse(PyObject *module, PyObject *const *args, Py_ssize_t count)
{
    if (count != 2) {
        PyErr_SetString(PyExc_TypeError, "parse(line, reference)");
        return NULL;
    }
    if (event_class == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "configure() first");
        return NULL;
    }
    PyObject *line = args[0], *reference = args[1];
    PyObject *parsed = UNDECIDED;
    if (PyUnicode_CheckExact(line) && PyUnicode_IS_ASCII(line)) {
        Span text = {(const char *)PyUnicode_1BYTE_DATA(line), PyUnicode_GET_LENGTH(line)};
        int printable = 1;
        for (Py_ssize_t i = 0; printable && i < text.length; i++)
            printable = (unsigned char)text.start[i] >= 0x20 && (unsigned char)text.start[i] < 0x7f;
        if (printable)
            parsed = parse_line(text, reference, 0);
    }
    if (parsed == UNDECIDED)
        return PyObject_Vectorcall(python_parser, args, 2, NULL);
    if (parsed == Py_None)
        Py_RETURN_NONE;
    return parsed;
}

/* A raw line as ingest reads it (bytes, with its line ending): passed_over for smtpd's session
 * edges, the event or None as parse_postfix_line gives them for the Postfix lines it is certain
 * of, once configure_logins() is called the LoginEvent of a Dovecot login line (syslog's or
 * Dovecot's own log's) that parse_dovecot_line reads as a successful login, None for syslog's
 * other Dovecot lines, or undecided for every other line, Dovecot's own log's other lines too
 * (the Python path reads those from the start). */
static PyObject *scan(PyObject *module, PyObject *const *args, Py_ssize_t count)
{
    if (count != 2 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "scan(raw: bytes, reference)");
        return NULL;
    }
    if (event_class == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "configure() first");
        return NULL;
    }
    /* As ingest decodes it: .rstrip("\r\n"); printable ASCII decodes to the same characters. */
    Span text = {PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0])};
    while (text.length > 0 && (text.start[text.length - 1] == '\n' || text.start[text.length - 1] == '\r'))
        text.length--;
    for (Py_ssize_t i = 0; i < text.length; i++) {
        unsigned char c = (unsigned char)text.start[i];
        if (c < 0x20 || c >= 0x7f)
            goto undecided;
    }
    if (text.length > 0 && is_digit(text.start[0]) && login_class != NULL) {
        PyObject *login = parse_dated_login(text);
        if (login != Py_None)
            return login;
    }
    PyObject *parsed = parse_line(text, args[1], 1);
    if (parsed == UNDECIDED)
        goto undecided;
    if (parsed == Py_None)
        Py_RETURN_NONE;
    return parsed;
undecided:
    Py_INCREF(undecided);
    return undecided;
}

/* The slots of `event_class`, field by field in field_names' order, when it is a class whose
 * instances hold exactly those slots and nothing else: no __dict__, no __init__ beyond the
 * dataclass's assignments (a test checks that events made either way are equal). Otherwise
 * slot_offsets[0] stays -1 and events are made by calling the class. */
static void find_slots(PyObject *event_class)
{
    slot_offsets[0] = -1;
    if (!PyType_Check(event_class))
        return;
    PyTypeObject *type = (PyTypeObject *)event_class;
    if (type->tp_dictoffset != 0 || type->tp_new != PyBaseObject_Type.tp_new ||
        type->tp_alloc != PyType_GenericAlloc)
        return;
    if (PyObject_HasAttrString(event_class, "__post_init__"))
        return;
    PyObject *slots = PyObject_GetAttrString(event_class, "__slots__");
    if (slots == NULL) {
        PyErr_Clear();
        return;
    }
    Py_ssize_t slot_count = PySequence_Size(slots);
    Py_DECREF(slots);
    if (slot_count != FIELD_COUNT) {
        PyErr_Clear();
        return;
    }
    Py_ssize_t offsets[FIELD_COUNT];
    for (int i = 0; i < FIELD_COUNT; i++) {
        PyObject *descriptor = PyObject_GetAttrString(event_class, field_names[i]);
        if (descriptor == NULL) {
            PyErr_Clear();
            return;
        }
        int usable = Py_IS_TYPE(descriptor, &PyMemberDescr_Type) &&
                     ((PyMemberDescrObject *)descriptor)->d_member->type == T_OBJECT_EX &&
                     ((PyMemberDescrObject *)descriptor)->d_common.d_type == type;
        if (usable)
            offsets[i] = ((PyMemberDescrObject *)descriptor)->d_member->offset;
        Py_DECREF(descriptor);
        if (!usable)
            return;
    }
    memcpy(slot_offsets, offsets, sizeof(offsets));
}

static PyObject *configure(PyObject *module, PyObject *const *args, Py_ssize_t count)
{
    if (count != 3) {
        PyErr_SetString(PyExc_TypeError, "configure(event_class, syslog_time, python_parser)");
        return NULL;
    }
    for (int i = 0; i < 3; i++)
        Py_INCREF(args[i]);
    Py_XSETREF(event_class, args[0]);
    Py_XSETREF(syslog_time, args[1]);
    Py_XSETREF(python_parser, args[2]);
    find_slots(args[0]);
    Py_CLEAR(stamp_reference);
    Py_CLEAR(stamp_moment);
    stamp_length = -1;
    Py_RETURN_NONE;
}

static PyObject *configure_logins(PyObject *module, PyObject *new_class)
{
    Py_INCREF(new_class);
    Py_XSETREF(login_class, new_class);
    Py_RETURN_NONE;
}

static PyObject *makes_events_directly(PyObject *module, PyObject *unused)
{
    return PyBool_FromLong(slot_offsets[0] >= 0);
}

static PyMethodDef methods[] = {
    {"makes_events_directly", makes_events_directly, METH_NOARGS,
     "Whether events are made by filling their slots (True) or by calling the class."},
    {"configure_logins", configure_logins, METH_O,
     "configure_logins(LoginEvent): scan() then reads Dovecot's successful logins into these, made as "
     "LoginEvent(time, service, user, client_ip, True, '', session)."},
    {"configure", (PyCFunction)(void (*)(void))configure, METH_FASTCALL,
     "configure(event_class, syslog_time, python_parser): what events are made of, and who decides the rest."},
    {"parse", (PyCFunction)(void (*)(void))parse, METH_FASTCALL,
     "parse(line, reference) -> event or None, as postfix.parse_postfix_line."},
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL,
     "scan(raw, reference) -> PASSED_OVER, an event, a login, None or UNDECIDED, for a raw log line."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_postfix_lines",
    .m_doc = "Postfix log lines, and Dovecot's login lines, parsed in C.",
    .m_size = -1,
    .m_methods = methods,
};

static PyObject *interned(const char *text)
{
    return PyUnicode_InternFromString(text);
}

PyMODINIT_FUNC PyInit__postfix_lines(void)
{
    for (int i = 0; i < KIND_COUNT; i++) {
        if ((kinds[i] = interned(kind_names[i])) == NULL)
            return NULL;
    }
    for (size_t i = 0; i < COMMON_COUNT; i++) {
        if ((common[i] = interned(common_names[i])) == NULL)
            return NULL;
    }
    if ((empty = PyUnicode_New(0, 0)) == NULL)
        return NULL;
    for (int i = 0; i < LOGIN_PROCESS_COUNT; i++) {
        if ((login_services[i] = interned(login_service_names[i])) == NULL)
            return NULL;
    }
    if ((status_refused = interned("refused")) == NULL)
        return NULL;
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return NULL;
    if ((one_day = PyDelta_FromDSU(1, 0, 0)) == NULL)
        return NULL;
    passed_over = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
    undecided = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
    if (passed_over == NULL || undecided == NULL)
        return NULL;
    PyObject *fields = PyTuple_New(FIELD_COUNT);
    for (int i = 0; fields != NULL && i < FIELD_COUNT; i++) {
        PyObject *name = PyUnicode_InternFromString(field_names[i]);
        if (name == NULL)
            Py_CLEAR(fields);
        else
            PyTuple_SET_ITEM(fields, i, name);
    }
    if (fields == NULL)
        return NULL;
    /* For the tests: every mark the ingest reads a Dovecot line by must hold one of these. */
    PyObject *marks = PyTuple_New(DOVECOT_MARK_COUNT);
    for (size_t i = 0; marks != NULL && i < DOVECOT_MARK_COUNT; i++) {
        PyObject *mark = PyUnicode_FromString(dovecot_marks[i]);
        if (mark == NULL)
            Py_CLEAR(marks);
        else
            PyTuple_SET_ITEM(marks, (Py_ssize_t)i, mark);
    }
    if (marks == NULL) {
        Py_DECREF(fields);
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_definition);
    /* AddObjectRef takes references of its own: each object is released once below, either way. */
    int failed = module == NULL || PyModule_AddObjectRef(module, "PASSED_OVER", passed_over) < 0 ||
                 PyModule_AddObjectRef(module, "UNDECIDED", undecided) < 0 ||
                 PyModule_AddObjectRef(module, "FIELDS", fields) < 0 ||
                 PyModule_AddObjectRef(module, "DOVECOT_MARKS", marks) < 0 ||
                 PyModule_AddStringConstant(module, "SOURCE_HASH", SOURCE_HASH) < 0;
    Py_DECREF(fields);
    Py_DECREF(marks);
    if (failed) {
        Py_XDECREF(module);
        return NULL;
    }
    return module;
}
