/*
 * The log ingest's assembler (controlplane/logs/transactions.py) for its most frequent events,
 * in C: a message's client=, cleanup, qmgr, delivery and removal lines each update the rows of
 * the transaction their queue ID has open (or start a new one), and in Python the calls between
 * the assembler and the store cost more than the updates themselves.
 *
 * add(store, event, junk_filings) does exactly what TransactionAssembler.add does for such an
 * event when the store answers from its memory (the queue ID open there and fresh, or known to
 * be new) and everything it needs is at hand (the addresses' domains already looked up): the
 * same rows made and changed, in the same order, the same entry remembered or forgotten, the
 * same transaction returned, the same calls to plain_reason, _junk_reason and junk_filings. For
 * every other event, and whenever anything is not as expected, it changes nothing and answers
 * NOT_DONE: the Python code then does the work (and raises what it raises). The row classes'
 * slots are read and written in place; configure() refuses classes whose instances are not
 * exactly those slots, and new rows are copies of instances the classes' own __init__ made.
 * What it takes from the Python code (QUEUE_LIFETIME, plain_reason, _junk_reason) is given to
 * configure() once, at import.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <datetime.h>

/* setup.py defines it as the SHA-256 of this file: compiled.py loads no build of another version. */
#ifndef SOURCE_HASH
#define SOURCE_HASH ""
#endif

enum {
    E_KIND, E_TIME, E_QUEUE_ID, E_CLIENT_NAME, E_CLIENT_IP, E_SASL_USER, E_MESSAGE_ID, E_SENDER, E_SIZE,
    E_PROGRAM, E_RECIPIENT, E_ORIG_TO, E_RELAY, E_DSN, E_STATUS, E_DETAIL, E_COUNT
};
static const char *const event_fields[E_COUNT] = {
    "kind", "time",    "queue_id", "client_name", "client_ip", "sasl_user", "message_id", "sender", "size",
    "program", "recipient", "orig_to", "relay",   "dsn",       "status",    "detail"};
enum {
    T_CLIENT_NAME, T_CLIENT_IP, T_SASL_USER, T_MESSAGE_ID, T_SENDER, T_SENDER_DOMAIN_ID, T_SIZE, T_FINISHED_AT,
    T_ID, T_DIRTY, T_ENTRIES, T_RECIPIENTS, T_COUNT
};
static const char *const transaction_fields[T_COUNT] = {
    "client_name", "client_ip", "sasl_user", "message_id", "sender", "sender_domain_id",
    "size",        "finished_at", "id",      "dirty",      "entries", "recipients"};
enum { Q_TRANSACTION, Q_TIME, Q_REMOVED, Q_ID, Q_DIRTY, Q_QUEUE_ID, Q_COUNT };
static const char *const entry_fields[Q_COUNT] = {"transaction", "time", "removed", "id", "dirty", "queue_id"};
enum {
    R_TRANSACTION, R_TIME, R_RECIPIENT, R_ORIG_TO, R_DOMAIN_ID, R_QUEUE_ID, R_OUTCOME, R_RELAY, R_STATUS_CODE,
    R_REASON, R_DETAIL, R_ATTEMPTS, R_ID, R_DIRTY, R_COUNT
};
static const char *const recipient_fields[R_COUNT] = {
    "transaction", "time", "recipient", "orig_to", "domain_id", "queue_id", "outcome", "relay", "status_code",
    "reason",      "detail", "attempts", "id",     "dirty"};

static PyTypeObject *event_type, *transaction_type, *entry_type, *recipient_type;
static Py_ssize_t event_slots[E_COUNT], transaction_slots[T_COUNT], entry_slots[Q_COUNT], recipient_slots[R_COUNT];
/* transactions.plain_reason and transactions._junk_reason, called for what they alone say. */
static PyObject *plain_reason, *junk_reason;
static PyObject *recipient_template;
static Py_ssize_t recipient_all[64];
static int recipient_all_count;
static PyObject *outcome_delivered, *outcome_forwarded, *outcome_relayed, *outcome_bounced, *empty_text, *one;
static PyObject *name_new_recipients, *name_filed_as_junk, *name_note_saved;
static PyObject *queued_as, *loopback_4, *loopback_6;
/* The last line's moment and the oldest an open entry may be for it: lines of one second share
 * their moment (the parser's), and the subtraction made a datetime for every line. */
static PyObject *last_time, *last_limit;
static PyObject *queue_lifetime;
static PyObject *not_done;
static PyObject *name_open, *name_changed, *name_finished, *name_stored_open_ids, *name_domain_ids;
static PyObject *name_ask_each_time, *name_node, *name_new_transactions, *name_new_entries;
/* A new message's rows are copies of these, made by the classes' own __init__ (configure), with
 * the line's values set: every other slot holds what __init__ gives it. */
static PyObject *transaction_template, *entry_template;
static Py_ssize_t transaction_all[64], entry_all[64];
static int transaction_all_count, entry_all_count;
static Py_ssize_t transaction_time_slot, transaction_node_slot;

#define SLOT(object, offset) (*(PyObject **)((char *)(object) + (offset)))

enum { K_CONNECT_CLIENT, K_MESSAGE_ID, K_QUEUED, K_REMOVED, K_DELIVERY, K_OTHER };

static PyObject *kind_names[K_OTHER];

static int kind_of(PyObject *kind)
{
    /* The compiled parser's kinds are interned, as these are: most lines end at a pointer. */
    for (int i = 0; i < K_OTHER; i++) {
        if (kind == kind_names[i])
            return i;
    }
    if (!PyUnicode_CheckExact(kind))
        return K_OTHER;
    if (PyUnicode_CompareWithASCIIString(kind, "delivery") == 0)
        return K_DELIVERY;
    if (PyUnicode_CompareWithASCIIString(kind, "message-id") == 0)
        return K_MESSAGE_ID;
    if (PyUnicode_CompareWithASCIIString(kind, "queued") == 0)
        return K_QUEUED;
    if (PyUnicode_CompareWithASCIIString(kind, "removed") == 0)
        return K_REMOVED;
    if (PyUnicode_CompareWithASCIIString(kind, "connect-client") == 0)
        return K_CONNECT_CLIENT;
    return K_OTHER;
}

/* Replace a slot's value (a new reference to `value` is taken). */
static void set_slot(PyObject *object, Py_ssize_t offset, PyObject *value)
{
    Py_INCREF(value);
    Py_XSETREF(SLOT(object, offset), value);
}

/* MailLogStore.changed: a row already written (its id set) and not yet noted is noted. */
static int changed(PyObject *store, PyObject *row, Py_ssize_t id_slot, Py_ssize_t dirty_slot)
{
    PyObject *id = SLOT(row, id_slot), *dirty = SLOT(row, dirty_slot);
    if (id == NULL || dirty == NULL || id == Py_None)
        return 0; /* id None: a new row, inserted whole (both slots are set by __init__) */
    int is_dirty = PyObject_IsTrue(dirty);
    if (is_dirty != 0)
        return is_dirty < 0 ? -1 : 0;
    PyObject *rows = PyObject_GetAttr(store, name_changed);
    if (rows == NULL)
        return -1;
    int appended = PyList_Append(rows, row);
    Py_DECREF(rows);
    if (appended < 0)
        return -1;
    set_slot(row, dirty_slot, Py_True);
    return 0;
}

/* Whether every slot of `object` at `offsets` holds a value (a deleted one is NULL). */
static int all_set(PyObject *object, const Py_ssize_t *offsets, int count)
{
    for (int i = 0; i < count; i++) {
        if (SLOT(object, offsets[i]) == NULL)
            return 0;
    }
    return 1;
}

/* A copy of `template` (an instance with `count` slots at `offsets`), each empty list a new one. */
static PyObject *copy_of(PyObject *template, const Py_ssize_t *offsets, int count)
{
    PyTypeObject *type = Py_TYPE(template);
    PyObject *made = type->tp_alloc(type, 0);
    if (made == NULL)
        return NULL;
    for (int i = 0; i < count; i++) {
        PyObject *value = SLOT(template, offsets[i]);
        if (value != NULL && PyList_CheckExact(value)) {
            value = PyList_New(0);
            if (value == NULL) {
                Py_DECREF(made);
                return NULL;
            }
            SLOT(made, offsets[i]) = value;
        } else {
            SLOT(made, offsets[i]) = Py_XNewRef(value);
        }
    }
    return made;
}

static int append_to(PyObject *store, PyObject *name, PyObject *row)
{
    PyObject *rows = PyObject_GetAttr(store, name);
    if (rows == NULL)
        return -1;
    int appended = PyList_Check(rows) ? PyList_Append(rows, row) : -1;
    if (!PyList_Check(rows))
        PyErr_SetString(PyExc_TypeError, "the store's rows are not a list");
    Py_DECREF(rows);
    return appended;
}

static PyObject *done(PyObject *value)
{
    Py_INCREF(value);
    return value;
}

/* The values a line sets on its message's transaction (connect-client, message-id, queued), once
 * checked by the caller; `sender_domain_id` is the queued sender's, if the sender is set. 1 where
 * Python returns None (a client= line of a message that has its client), 0, or -1 on failure. */
static int apply(PyObject *store, PyObject *transaction, PyObject *event, int kind, int set_sender,
                 PyObject *sender_domain_id)
{
    if (kind == K_CONNECT_CLIENT) {
        int has_client = PyObject_IsTrue(SLOT(transaction, transaction_slots[T_CLIENT_IP]));
        if (has_client != 0)
            return has_client; /* 1: a re-injection, the content filter's connection is not the client */
        set_slot(transaction, transaction_slots[T_CLIENT_NAME], SLOT(event, event_slots[E_CLIENT_NAME]));
        set_slot(transaction, transaction_slots[T_CLIENT_IP], SLOT(event, event_slots[E_CLIENT_IP]));
        set_slot(transaction, transaction_slots[T_SASL_USER], SLOT(event, event_slots[E_SASL_USER]));
    } else if (kind == K_MESSAGE_ID) {
        PyObject *message_id = SLOT(event, event_slots[E_MESSAGE_ID]);
        if (PyUnicode_GET_LENGTH(message_id) > 998) {
            PyObject *cut = PyUnicode_Substring(message_id, 0, 998);
            if (cut == NULL)
                return -1;
            set_slot(transaction, transaction_slots[T_MESSAGE_ID], cut);
            Py_DECREF(cut);
        } else {
            set_slot(transaction, transaction_slots[T_MESSAGE_ID], message_id);
        }
    } else { /* K_QUEUED */
        if (set_sender) {
            set_slot(transaction, transaction_slots[T_SENDER], SLOT(event, event_slots[E_SENDER]));
            set_slot(transaction, transaction_slots[T_SENDER_DOMAIN_ID], sender_domain_id);
        }
        if (SLOT(transaction, transaction_slots[T_SIZE]) == Py_None)
            set_slot(transaction, transaction_slots[T_SIZE], SLOT(event, event_slots[E_SIZE]));
    }
    return changed(store, transaction, transaction_slots[T_ID], transaction_slots[T_DIRTY]);
}

/* TransactionAssembler._entry for a queue ID nobody has open (not in memory, not among those the
 * database holds open): a new transaction and entry, as MailLogStore.new_transaction and
 * new_entry make them; then the line's values. NOT_DONE, with nothing changed, where the store
 * would ask the database or the sender's domain is not looked up yet. */
static PyObject *new_message(PyObject *store, PyObject *event, int kind, PyObject *open, PyObject *queue_id)
{
    PyObject *stored = NULL, *ask = NULL, *node = NULL, *domain_ids = NULL, *transaction = NULL, *entry = NULL;
    PyObject *result = NULL, *sender_domain_id = NULL;
    stored = PyObject_GetAttr(store, name_stored_open_ids);
    ask = stored == NULL ? NULL : PyObject_GetAttr(store, name_ask_each_time);
    node = ask == NULL ? NULL : PyObject_GetAttr(store, name_node);
    if (node == NULL)
        goto failed;
    /* Not read yet (None: the store reads it on first need), or too many to remember. */
    if (!PySet_CheckExact(stored) || ask != Py_False || !PyUnicode_CheckExact(node))
        goto not_mine;
    int known = PySet_Contains(stored, queue_id);
    if (known < 0)
        goto failed;
    if (known)
        goto not_mine; /* open in the database: read back in Python */
    if (kind == K_MESSAGE_ID && !PyUnicode_CheckExact(SLOT(event, event_slots[E_MESSAGE_ID])))
        goto not_mine;
    if (kind == K_QUEUED) {
        domain_ids = PyObject_GetAttr(store, name_domain_ids);
        if (domain_ids == NULL)
            goto failed;
        if (!PyDict_CheckExact(domain_ids))
            goto not_mine;
        sender_domain_id = PyDict_GetItemWithError(domain_ids, SLOT(event, event_slots[E_SENDER]));
        if (sender_domain_id == NULL) {
            PyErr_Clear();
            goto not_mine;
        }
    }
    PyObject *time = SLOT(event, event_slots[E_TIME]);
    transaction = copy_of(transaction_template, transaction_all, transaction_all_count);
    if (transaction == NULL)
        goto failed;
    set_slot(transaction, transaction_time_slot, time);
    set_slot(transaction, transaction_node_slot, node);
    entry = copy_of(entry_template, entry_all, entry_all_count);
    if (entry == NULL)
        goto failed;
    set_slot(entry, entry_slots[Q_TRANSACTION], transaction);
    set_slot(entry, entry_slots[Q_QUEUE_ID], queue_id);
    set_slot(entry, entry_slots[Q_TIME], time);
    if (append_to(store, name_new_transactions, transaction) < 0 ||
        PyList_Append(SLOT(transaction, transaction_slots[T_ENTRIES]), entry) < 0 ||
        append_to(store, name_new_entries, entry) < 0 || PyDict_SetItem(open, queue_id, entry) < 0)
        goto failed;
    int set_sender = SLOT(transaction, transaction_slots[T_SENDER]) == Py_None ||
                     PyList_GET_SIZE(SLOT(transaction, transaction_slots[T_ENTRIES])) < 2;
    int applied = apply(store, transaction, event, kind, set_sender, sender_domain_id);
    if (applied < 0)
        goto failed;
    result = Py_NewRef(applied ? Py_None : transaction);
    goto finish;
not_mine:
    result = Py_NewRef(not_done);
    goto finish;
failed:
    result = NULL;
finish:
    Py_XDECREF(stored);
    Py_XDECREF(ask);
    Py_XDECREF(node);
    Py_XDECREF(domain_ids);
    Py_XDECREF(transaction);
    Py_XDECREF(entry);
    return result;
}

/* Whether `text` is a str of printable ASCII alone: where \\d, \\S and .lower() in the Python
 * code mean what this code takes them to mean. */
static int plain_ascii(PyObject *text)
{
    if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_ASCII(text))
        return 0;
    const Py_UCS1 *at = PyUnicode_1BYTE_DATA(text);
    for (Py_ssize_t i = 0; i < PyUnicode_GET_LENGTH(text); i++) {
        if (at[i] < 0x20 || at[i] == 0x7f)
            return 0;
    }
    return 1;
}



/* `text`[:length], a new reference. */
static PyObject *cut(PyObject *text, Py_ssize_t length)
{
    if (PyUnicode_GET_LENGTH(text) <= length)
        return Py_NewRef(text);
    return PyUnicode_Substring(text, 0, length);
}

static int is_digit(Py_UCS1 c) { return c >= '0' && c <= '9'; }

/* a.lower() == b.lower() for two str of ASCII: A-Z folded, whatever the C library's locale
 * (strncasecmp's Turkish I is not Python's). */
static int same_folded(PyObject *a, PyObject *b)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(a);
    if (n != PyUnicode_GET_LENGTH(b))
        return 0;
    const Py_UCS1 *x = PyUnicode_1BYTE_DATA(a), *y = PyUnicode_1BYTE_DATA(b);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS1 p = x[i] >= 'A' && x[i] <= 'Z' ? x[i] + 32 : x[i];
        Py_UCS1 q = y[i] >= 'A' && y[i] <= 'Z' ? y[i] + 32 : y[i];
        if (p != q)
            return 0;
    }
    return 1;
}

/* transactions._status_code for a detail of printable ASCII, cut to 16 characters. */
static PyObject *status_code(PyObject *detail, PyObject *dsn)
{
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(detail);
    Py_ssize_t n = PyUnicode_GET_LENGTH(detail);
    if (n < 4 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || !is_digit(s[1]) || !is_digit(s[2]) ||
        (s[3] != ' ' && s[3] != '-'))
        return cut(dsn, 16); /* _REPLY does not match: the dsn */
    /* (?P<enhanced>[245]\.\d{1,3}\.\d{1,3})? right after the code and its separator */
    Py_ssize_t at = 4, end = -1;
    if (at + 1 < n && (s[at] == '2' || s[at] == '4' || s[at] == '5') && s[at + 1] == '.') {
        Py_ssize_t digits = at + 2, first = digits;
        while (digits < n && digits - first < 3 && is_digit(s[digits]))
            digits++;
        if (digits > first && digits < n && s[digits] == '.') {
            Py_ssize_t second = digits + 1, last = second;
            while (last < n && last - second < 3 && is_digit(s[last]))
                last++;
            if (last > second)
                end = last;
        }
    }
    if (end > 0) {
        /* "CODE ENHANCED", which the detail holds as it is when a space separates them */
        Py_ssize_t length = end < 16 ? end : 16;
        if (s[3] == ' ')
            return PyUnicode_Substring(detail, 0, length);
        PyObject *text = PyUnicode_New(length, 127);
        if (text == NULL)
            return NULL;
        memcpy(PyUnicode_1BYTE_DATA(text), s, (size_t)length);
        PyUnicode_1BYTE_DATA(text)[3] = ' ';
        return text;
    }
    PyObject *code = PyUnicode_Substring(detail, 0, 3);
    if (code == NULL)
        return NULL;
    PyObject *enhanced = Py_NewRef(dsn);
    PyObject *whole;
    int has_enhanced = PyObject_IsTrue(enhanced);
    if (has_enhanced < 0)
        whole = NULL;
    else if (has_enhanced)
        whole = PyUnicode_FromFormat("%U %U", code, enhanced);
    else
        whole = Py_NewRef(code);
    Py_DECREF(code);
    Py_DECREF(enhanced);
    if (whole == NULL)
        return NULL;
    PyObject *result = cut(whole, 16);
    Py_DECREF(whole);
    return result;
}

/* The LMTP session a delivered message's reply names (_LMTP_SAVED: "250 2.0.0 <a@b> SESSION
 * Saved"), a new reference, or Py_None; `detail` is printable ASCII. */
static PyObject *lmtp_session(PyObject *detail)
{
    const char *s = (const char *)PyUnicode_1BYTE_DATA(detail);
    Py_ssize_t n = PyUnicode_GET_LENGTH(detail);
    if (n < 11 || memcmp(s, "250 2.0.0 <", 11) != 0)
        Py_RETURN_NONE;
    const char *closing = memchr(s + 11, '>', (size_t)(n - 11));
    if (closing == NULL)
        Py_RETURN_NONE;
    Py_ssize_t start = closing - s + 1;
    if (start >= n || s[start] != ' ')
        Py_RETURN_NONE;
    start++;
    Py_ssize_t end = start;
    while (end < n && s[end] != ' ')
        end++;
    if (end == start || n - end < 6 || memcmp(s + end, " Saved", 6) != 0)
        Py_RETURN_NONE;
    return PyUnicode_Substring(detail, start, end);
}

/* TransactionAssembler._add_delivery, where the line names a recipient the transaction has no
 * row for yet or one it has (same recipient and orig_to), and no re-injection on this host.
 * 1: left to Python, nothing changed; 0: done; -1: failed. */
static int delivery(PyObject *store, PyObject *event, PyObject *entry, PyObject *transaction, PyObject *junk_filings)
{
    PyObject *recipient = SLOT(event, event_slots[E_RECIPIENT]), *orig_to = SLOT(event, event_slots[E_ORIG_TO]);
    PyObject *relay = SLOT(event, event_slots[E_RELAY]), *dsn = SLOT(event, event_slots[E_DSN]);
    PyObject *status = SLOT(event, event_slots[E_STATUS]), *detail = SLOT(event, event_slots[E_DETAIL]);
    PyObject *program = SLOT(event, event_slots[E_PROGRAM]);
    if (recipient_template == NULL || !plain_ascii(recipient) || !plain_ascii(orig_to) || !plain_ascii(detail) ||
        !PyUnicode_CheckExact(relay) || !PyUnicode_CheckExact(dsn) || !PyUnicode_CheckExact(status) ||
        !PyUnicode_CheckExact(program))
        return 1;
    /* _outcome */
    PyObject *outcome;
    int sent = PyUnicode_CompareWithASCIIString(status, "sent") == 0;
    if (sent) {
        if (PyUnicode_CompareWithASCIIString(program, "smtp") != 0)
            outcome = outcome_delivered;
        else if (PyUnicode_GET_LENGTH(orig_to) > 0 && !same_folded(orig_to, recipient))
            outcome = outcome_forwarded;
        else
            outcome = outcome_relayed;
    } else if (PyUnicode_CompareWithASCIIString(status, "deferred") == 0 ||
               PyUnicode_CompareWithASCIIString(status, "bounced") == 0 ||
               PyUnicode_CompareWithASCIIString(status, "expired") == 0) {
        outcome = status;
    } else {
        outcome = outcome_bounced;
    }
    /* The recipient's row, if the transaction has one; a row of the same recipient through
     * another alias may be one this host re-queued (_handed_on): Python's. */
    PyObject *rows = SLOT(transaction, transaction_slots[T_RECIPIENTS]);
    if (!PyList_CheckExact(rows))
        return 1;
    PyObject *existing = NULL;
    int same_recipient = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(rows); i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        if (!Py_IS_TYPE(row, recipient_type) || !all_set(row, recipient_slots, R_COUNT))
            return 1;
        int equal = PyUnicode_CheckExact(SLOT(row, recipient_slots[R_RECIPIENT])) &&
                    PyUnicode_Compare(SLOT(row, recipient_slots[R_RECIPIENT]), recipient) == 0;
        if (PyErr_Occurred())
            return -1;
        if (!equal)
            continue;
        same_recipient = 1;
        int same_alias = PyUnicode_CheckExact(SLOT(row, recipient_slots[R_ORIG_TO])) &&
                         PyUnicode_Compare(SLOT(row, recipient_slots[R_ORIG_TO]), orig_to) == 0;
        if (PyErr_Occurred())
            return -1;
        if (same_alias) {
            existing = row;
            break;
        }
    }
    if (existing == NULL && same_recipient)
        return 1;
    if (existing != NULL && !PyLong_CheckExact(SLOT(existing, recipient_slots[R_ATTEMPTS])))
        return 1;
    /* A re-injection on this host (a new queue ID for the transaction): Python's. */
    if (sent) {
        int queued = PyUnicode_Contains(detail, queued_as);
        int loopback = queued > 0 ? PyUnicode_Contains(relay, loopback_4) : 0;
        int loopback6 = queued > 0 && loopback == 0 ? PyUnicode_Contains(relay, loopback_6) : 0;
        if (queued < 0 || loopback < 0 || loopback6 < 0)
            return -1;
        if (queued && (loopback || loopback6))
            return 1;
    }
    PyObject *domain_id = NULL;
    if (existing == NULL) {
        PyObject *domain_ids = PyObject_GetAttr(store, name_domain_ids);
        if (domain_ids == NULL)
            return -1;
        PyObject *address = PyUnicode_GET_LENGTH(orig_to) > 0 ? orig_to : recipient;
        domain_id = PyDict_CheckExact(domain_ids) ? PyDict_GetItemWithError(domain_ids, address) : NULL;
        Py_XINCREF(domain_id);
        Py_DECREF(domain_ids);
        if (domain_id == NULL) {
            PyErr_Clear();
            return 1; /* not looked up yet */
        }
    }
    /* Everything looked at: from here on the row changes as Python changes it. */
    PyObject *made = NULL;
    if (existing == NULL) {
        made = copy_of(recipient_template, recipient_all, recipient_all_count);
        PyObject *recipient_cut = made == NULL ? NULL : cut(recipient, 320);
        PyObject *orig_to_cut = recipient_cut == NULL ? NULL : cut(orig_to, 320);
        if (orig_to_cut == NULL) {
            Py_XDECREF(recipient_cut);
            Py_XDECREF(made);
            Py_DECREF(domain_id);
            return -1;
        }
        set_slot(made, recipient_slots[R_TRANSACTION], transaction);
        set_slot(made, recipient_slots[R_RECIPIENT], recipient_cut);
        set_slot(made, recipient_slots[R_ORIG_TO], orig_to_cut);
        set_slot(made, recipient_slots[R_DOMAIN_ID], domain_id);
        Py_DECREF(recipient_cut);
        Py_DECREF(orig_to_cut);
        Py_DECREF(domain_id);
        if (PyList_Append(rows, made) < 0 || append_to(store, name_new_recipients, made) < 0) {
            Py_DECREF(made);
            return -1;
        }
        existing = made;
    }
    int failed = -1;
    PyObject *code = NULL, *reason = NULL, *relay_cut = NULL, *session = NULL;
    /* Held for the calls into Python below, which must not free what is used after them. */
    PyObject *time = Py_NewRef(SLOT(event, event_slots[E_TIME]));
    Py_INCREF(existing);
    Py_INCREF(transaction);
    Py_INCREF(detail);
    Py_INCREF(dsn);
    set_slot(existing, recipient_slots[R_TIME], time);
    set_slot(existing, recipient_slots[R_QUEUE_ID], SLOT(entry, entry_slots[Q_QUEUE_ID]));
    set_slot(existing, recipient_slots[R_OUTCOME], outcome);
    if ((relay_cut = cut(relay, 255)) == NULL || (code = status_code(detail, dsn)) == NULL)
        goto done;
    set_slot(existing, recipient_slots[R_RELAY], relay_cut);
    set_slot(existing, recipient_slots[R_STATUS_CODE], code);
    set_slot(existing, recipient_slots[R_DETAIL], detail);
    if (outcome == outcome_delivered || outcome == outcome_forwarded || outcome == outcome_relayed)
        reason = Py_NewRef(empty_text);
    else
        reason = PyObject_CallFunctionObjArgs(plain_reason, outcome, detail, dsn, NULL);
    if (reason == NULL)
        goto done;
    set_slot(existing, recipient_slots[R_REASON], reason);
    if (outcome == outcome_delivered) {
        session = lmtp_session(detail);
        if (session == NULL)
            goto done;
        if (session != Py_None) {
            PyObject *filed = PyObject_CallMethodOneArg(junk_filings, name_filed_as_junk, session);
            int is_filed = filed == NULL ? -1 : PyObject_IsTrue(filed);
            Py_XDECREF(filed);
            if (is_filed < 0)
                goto done;
            if (is_filed) {
                PyObject *junk = PyObject_CallOneArg(junk_reason, transaction);
                if (junk == NULL)
                    goto done;
                set_slot(existing, recipient_slots[R_REASON], junk);
                Py_DECREF(junk);
            } else {
                PyObject *noted = PyObject_CallMethodObjArgs(junk_filings, name_note_saved, session, time,
                                                             existing, NULL);
                if (noted == NULL)
                    goto done;
                Py_DECREF(noted);
            }
        }
    }
    PyObject *attempts = PyNumber_Add(SLOT(existing, recipient_slots[R_ATTEMPTS]), one);
    if (attempts == NULL)
        goto done;
    Py_XSETREF(SLOT(existing, recipient_slots[R_ATTEMPTS]), attempts);
    if (changed(store, existing, recipient_slots[R_ID], recipient_slots[R_DIRTY]) < 0)
        goto done;
    failed = 0;
done:
    Py_XDECREF(code);
    Py_XDECREF(reason);
    Py_XDECREF(relay_cut);
    Py_XDECREF(session);
    Py_XDECREF(made);
    Py_DECREF(time);
    Py_DECREF(existing);
    Py_DECREF(transaction);
    Py_DECREF(detail);
    Py_DECREF(dsn);
    return failed;
}

static PyObject *add(PyObject *module, PyObject *const *args, Py_ssize_t count)
{
    if (count != 3) {
        PyErr_SetString(PyExc_TypeError, "add(store, event, junk_filings)");
        return NULL;
    }
    PyObject *store = args[0], *event = args[1], *junk_filings = args[2];
    if (event_type == NULL || !Py_IS_TYPE(event, event_type) || !all_set(event, event_slots, E_COUNT))
        return done(not_done);
    int kind = kind_of(SLOT(event, event_slots[E_KIND]));
    PyObject *queue_id = SLOT(event, event_slots[E_QUEUE_ID]);
    if (kind == K_OTHER || !PyUnicode_CheckExact(queue_id))
        return done(not_done);

    /* Everything is looked at first; nothing changes until the event is certainly this code's. */
    PyObject *open = PyObject_GetAttr(store, name_open);
    if (open == NULL)
        return NULL;
    PyObject *result = NULL, *entry = NULL, *limit = NULL, *domain_ids = NULL;
    if (!PyDict_CheckExact(open))
        goto not_mine;
    entry = PyDict_GetItemWithError(open, queue_id);
    if (entry == NULL) {
        if (PyErr_Occurred())
            goto failed;
        if (kind == K_REMOVED || kind == K_DELIVERY || transaction_template == NULL)
            goto not_mine;
        result = new_message(store, event, kind, open, queue_id);
        goto finish;
    }
    Py_INCREF(entry); /* the dict's reference may go below */
    if (!Py_IS_TYPE(entry, entry_type) || !all_set(entry, entry_slots, Q_COUNT))
        goto not_mine;
    PyObject *transaction = SLOT(entry, entry_slots[Q_TRANSACTION]);
    if (!Py_IS_TYPE(transaction, transaction_type) || !all_set(transaction, transaction_slots, T_COUNT))
        goto not_mine; /* a released transaction (no entries): Python raises for it */
    PyObject *time = SLOT(event, event_slots[E_TIME]);
    if (time == last_time) {
        limit = Py_NewRef(last_limit);
    } else {
        limit = PyNumber_Subtract(time, queue_lifetime);
        if (limit == NULL) {
            PyErr_Clear();
            goto not_mine;
        }
        Py_INCREF(time);
        Py_XSETREF(last_time, time);
        Py_INCREF(limit);
        Py_XSETREF(last_limit, limit);
    }
    int fresh = PyObject_RichCompareBool(SLOT(entry, entry_slots[Q_TIME]), limit, Py_GT);
    if (fresh != 1) {
        PyErr_Clear();
        goto not_mine; /* an entry too old for this line: the store asks the database */
    }
    PyObject *entries = SLOT(transaction, transaction_slots[T_ENTRIES]);
    if (!PyList_CheckExact(entries))
        goto not_mine;
    if (kind == K_DELIVERY) {
        int delivered = delivery(store, event, entry, transaction, junk_filings);
        if (delivered < 0)
            goto failed;
        if (delivered > 0)
            goto not_mine;
        /* remember(), which Python does first: nothing between looks at the order. */
        if (PyDict_DelItem(open, queue_id) < 0 || PyDict_SetItem(open, queue_id, entry) < 0)
            goto failed;
        result = done(Py_None);
        goto finish;
    }
    PyObject *sender_domain_id = NULL;
    int set_sender = 0;
    if (kind == K_MESSAGE_ID) {
        if (!PyUnicode_CheckExact(SLOT(event, event_slots[E_MESSAGE_ID])))
            goto not_mine;
    } else if (kind == K_QUEUED) {
        set_sender = SLOT(transaction, transaction_slots[T_SENDER]) == Py_None || PyList_GET_SIZE(entries) < 2;
        if (set_sender) {
            /* MailLogStore.domain_id from its memory; an address not in it is looked up in Python. */
            domain_ids = PyObject_GetAttr(store, name_domain_ids);
            if (domain_ids == NULL)
                goto failed;
            if (!PyDict_CheckExact(domain_ids))
                goto not_mine;
            sender_domain_id = PyDict_GetItemWithError(domain_ids, SLOT(event, event_slots[E_SENDER]));
            if (sender_domain_id == NULL) {
                if (PyErr_Occurred())
                    PyErr_Clear(); /* unhashable: Python raises it */
                goto not_mine;
            }
        }
    } else if (kind == K_REMOVED) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(entries); i++) {
            PyObject *other = PyList_GET_ITEM(entries, i);
            if (!Py_IS_TYPE(other, entry_type) || SLOT(other, entry_slots[Q_REMOVED]) == NULL)
                goto not_mine;
        }
    }

    if (kind == K_REMOVED) {
        /* remember() then forget(): the entry leaves the open ones. */
        if (PyDict_DelItem(open, queue_id) < 0)
            goto failed;
        set_slot(entry, entry_slots[Q_REMOVED], Py_True);
        if (changed(store, entry, entry_slots[Q_ID], entry_slots[Q_DIRTY]) < 0)
            goto failed;
        PyObject *stored = PyObject_GetAttr(store, name_stored_open_ids);
        if (stored == NULL)
            goto failed;
        int truthy = PyObject_IsTrue(stored);
        int discarded = truthy > 0 && PyAnySet_Check(stored) ? PySet_Discard(stored, queue_id) : 0;
        Py_DECREF(stored);
        if (truthy < 0 || discarded < 0)
            goto failed;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(entries); i++) {
            int removed = PyObject_IsTrue(SLOT(PyList_GET_ITEM(entries, i), entry_slots[Q_REMOVED]));
            if (removed < 0)
                goto failed;
            if (!removed) {
                result = done(Py_None);
                goto finish;
            }
        }
        /* MailLogStore.finish */
        set_slot(transaction, transaction_slots[T_FINISHED_AT], time);
        if (changed(store, transaction, transaction_slots[T_ID], transaction_slots[T_DIRTY]) < 0)
            goto failed;
        PyObject *finished = PyObject_GetAttr(store, name_finished);
        if (finished == NULL)
            goto failed;
        int appended = PyList_Append(finished, transaction);
        Py_DECREF(finished);
        if (appended < 0)
            goto failed;
        result = done(transaction);
        goto finish;
    }

    /* remember(): the entry becomes the most recently used. */
    if (PyDict_DelItem(open, queue_id) < 0 || PyDict_SetItem(open, queue_id, entry) < 0)
        goto failed;
    int applied = apply(store, transaction, event, kind, set_sender, sender_domain_id);
    if (applied < 0)
        goto failed;
    result = done(applied ? Py_None : transaction);
    goto finish;

not_mine:
    result = done(not_done);
    goto finish;
failed:
    result = NULL;
finish:
    Py_XDECREF(entry);
    Py_XDECREF(limit);
    Py_XDECREF(domain_ids);
    Py_DECREF(open);
    return result;
}

/* The offsets of `names`' slots in `type`, when its instances hold exactly such slots (no
 * __dict__; each name a slot of this very class holding any object): 1, else 0. */
static int find_slots(PyObject *type_object, const char *const *names, int count, Py_ssize_t *offsets)
{
    if (!PyType_Check(type_object))
        return 0;
    PyTypeObject *type = (PyTypeObject *)type_object;
    if (type->tp_dictoffset != 0)
        return 0;
    for (int i = 0; i < count; i++) {
        PyObject *descriptor = PyObject_GetAttrString(type_object, names[i]);
        if (descriptor == NULL) {
            PyErr_Clear();
            return 0;
        }
        int usable = Py_IS_TYPE(descriptor, &PyMemberDescr_Type) &&
                     ((PyMemberDescrObject *)descriptor)->d_member->type == T_OBJECT_EX &&
                     ((PyMemberDescrObject *)descriptor)->d_common.d_type == type;
        if (usable)
            offsets[i] = ((PyMemberDescrObject *)descriptor)->d_member->offset;
        Py_DECREF(descriptor);
        if (!usable)
            return 0;
    }
    return 1;
}

/* The offsets of every slot of `type` (its __slots__, none inherited), or 0. */
static int all_slots(PyObject *type_object, Py_ssize_t *offsets, int *count)
{
    PyTypeObject *type = (PyTypeObject *)type_object;
    if (type->tp_base != &PyBaseObject_Type)
        return 0;
    PyObject *names = PyObject_GetAttrString(type_object, "__slots__");
    if (names == NULL) {
        PyErr_Clear();
        return 0;
    }
    int usable = PyTuple_CheckExact(names) && PyTuple_GET_SIZE(names) <= 64;
    for (Py_ssize_t i = 0; usable && i < PyTuple_GET_SIZE(names); i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        const char *text = PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
        usable = text != NULL && find_slots(type_object, &text, 1, &offsets[i]);
    }
    if (usable)
        *count = (int)PyTuple_GET_SIZE(names);
    Py_DECREF(names);
    PyErr_Clear();
    return usable;
}

/* Whether every slot of a template holds a value the copies may share, or an empty list. */
static int shareable(PyObject *template, const Py_ssize_t *offsets, int count)
{
    for (int i = 0; i < count; i++) {
        PyObject *value = SLOT(template, offsets[i]);
        int scalar = value == NULL || value == Py_None || PyBool_Check(value) || PyUnicode_CheckExact(value) ||
                     PyLong_CheckExact(value) || PyFloat_CheckExact(value) || PyObject_TypeCheck(value, transaction_type);
        if (!scalar && !(PyList_CheckExact(value) && PyList_GET_SIZE(value) == 0))
            return 0;
    }
    return 1;
}

/* The templates of a new message's rows, made by the classes themselves; 0 if they cannot serve. */
static int make_templates(PyObject *transaction_class, PyObject *entry_class)
{
    static const char *const time_name[] = {"time", "node"};
    Py_ssize_t offsets[2];
    if (!all_slots(transaction_class, transaction_all, &transaction_all_count) ||
        !all_slots(entry_class, entry_all, &entry_all_count) || !find_slots(transaction_class, time_name, 2, offsets))
        return 0;
    transaction_time_slot = offsets[0];
    transaction_node_slot = offsets[1];
    PyObject *empty = PyUnicode_FromString("");
    if (empty == NULL)
        return -1;
    transaction_template = PyObject_CallOneArg(transaction_class, Py_None);
    if (transaction_template != NULL)
        entry_template = PyObject_CallFunctionObjArgs(entry_class, transaction_template, empty, Py_None, NULL);
    Py_DECREF(empty);
    if (entry_template == NULL) {
        Py_CLEAR(transaction_template);
        return -1;
    }
    if (!Py_IS_TYPE(transaction_template, transaction_type) || !Py_IS_TYPE(entry_template, entry_type) ||
        !shareable(transaction_template, transaction_all, transaction_all_count) ||
        !shareable(entry_template, entry_all, entry_all_count)) {
        Py_CLEAR(transaction_template);
        Py_CLEAR(entry_template);
        return 0;
    }
    return 1;
}

static PyObject *configure(PyObject *module, PyObject *const *args, Py_ssize_t count)
{
    if (count != 7 || !PyDelta_Check(args[3]) || !PyCallable_Check(args[5]) || !PyCallable_Check(args[6])) {
        PyErr_SetString(PyExc_TypeError, "configure(event_class, transaction_class, entry_class, queue_lifetime, "
                                         "recipient_class, plain_reason, junk_reason)");
        return NULL;
    }
    Py_CLEAR(event_type);
    Py_CLEAR(transaction_type);
    Py_CLEAR(entry_type);
    Py_CLEAR(transaction_template);
    Py_CLEAR(entry_template);
    Py_CLEAR(recipient_type);
    Py_CLEAR(recipient_template);
    if (!find_slots(args[0], event_fields, E_COUNT, event_slots) ||
        !find_slots(args[1], transaction_fields, T_COUNT, transaction_slots) ||
        !find_slots(args[2], entry_fields, Q_COUNT, entry_slots) ||
        !find_slots(args[4], recipient_fields, R_COUNT, recipient_slots))
        Py_RETURN_FALSE;
    Py_INCREF(args[5]);
    Py_XSETREF(plain_reason, args[5]);
    Py_INCREF(args[6]);
    Py_XSETREF(junk_reason, args[6]);
    Py_INCREF(args[3]);
    Py_XSETREF(queue_lifetime, args[3]);
    Py_CLEAR(last_time);
    Py_CLEAR(last_limit);
    event_type = (PyTypeObject *)Py_NewRef(args[0]);
    transaction_type = (PyTypeObject *)Py_NewRef(args[1]);
    entry_type = (PyTypeObject *)Py_NewRef(args[2]);
    /* Without templates a new message's lines (and new recipients) are left to Python. */
    if (make_templates(args[1], args[2]) < 0)
        return NULL;
    if (transaction_template != NULL && all_slots(args[4], recipient_all, &recipient_all_count)) {
        recipient_type = (PyTypeObject *)Py_NewRef(args[4]);
        recipient_template = PyObject_CallOneArg(args[4], transaction_template);
        if (recipient_template == NULL)
            return NULL;
        if (!Py_IS_TYPE(recipient_template, recipient_type) ||
            !shareable(recipient_template, recipient_all, recipient_all_count))
            Py_CLEAR(recipient_template);
    }
    Py_RETURN_TRUE;
}

static PyMethodDef methods[] = {
    {"configure", (PyCFunction)(void (*)(void))configure, METH_FASTCALL,
     "configure(event_class, transaction_class, entry_class, queue_lifetime, recipient_class, plain_reason, "
     "junk_reason) -> whether add() can work on these classes' slots."},
    {"add", (PyCFunction)(void (*)(void))add, METH_FASTCALL,
     "add(store, event, junk_filings) -> what TransactionAssembler.add returns, or NOT_DONE (nothing changed)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_assemble",
    .m_doc = "The log ingest's assembler for a message's most frequent lines.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__assemble(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return NULL;
    static const char *const kinds[K_OTHER] = {"connect-client", "message-id", "queued", "removed", "delivery"};
    for (int i = 0; i < K_OTHER; i++) {
        if ((kind_names[i] = PyUnicode_InternFromString(kinds[i])) == NULL)
            return NULL;
    }
    struct {
        PyObject **text;
        const char *value;
    } texts[] = {
        {&name_open, "_open"},
        {&name_changed, "_changed"},
        {&name_finished, "_finished"},
        {&name_stored_open_ids, "_stored_open_ids"},
        {&name_domain_ids, "_domain_ids"},
        {&name_ask_each_time, "_ask_each_time"},
        {&name_node, "node"},
        {&name_new_transactions, "_new_transactions"},
        {&name_new_entries, "_new_entries"},
        {&name_new_recipients, "_new_recipients"},
        {&name_filed_as_junk, "filed_as_junk"},
        {&name_note_saved, "note_saved"},
        {&queued_as, "queued as "},
        {&loopback_4, "[127."},
        {&loopback_6, "[::1]"},
        {&outcome_delivered, "delivered"},
        {&outcome_forwarded, "forwarded"},
        {&outcome_relayed, "relayed"},
        {&outcome_bounced, "bounced"},
        {&empty_text, ""},
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        if ((*texts[i].text = PyUnicode_InternFromString(texts[i].value)) == NULL)
            return NULL;
    }
    if ((one = PyLong_FromLong(1)) == NULL)
        return NULL;
    not_done = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
    if (not_done == NULL)
        return NULL;
    PyObject *module = PyModule_Create(&module_definition);
    if (module == NULL)
        return NULL;
    if (PyModule_AddStringConstant(module, "SOURCE_HASH", SOURCE_HASH) < 0 ||
        PyModule_AddObjectRef(module, "NOT_DONE", not_done) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
