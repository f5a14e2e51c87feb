/*
 * Row values converted for SQLite's executemany in C: the log ingest's batch writer
 * (controlplane/logs/store.py, _BulkWriter) hands every row of a batch through the columns' bind
 * processors, and in Python that loop cost a tenth of an ingest.
 *
 * Each conversion is (position, processor, remembered, utc): the value at `position` becomes
 * processor(value), remembered in the dict `remembered` (values repeat: many lines to a second,
 * the same flags). With `utc`, an exact datetime in datetime.UTC is written here directly as the
 * "YYYY-MM-DD HH:MM:SS.ffffff" text SQLAlchemy's SQLite DATETIME stores; the writer sets `utc`
 * only after checking that the processor gives that same text (store._formats_like_c).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <stdint.h>
#include <string.h>

/* setup.py defines it as the SHA-256 of this file: compiled.py loads no build of another version. */
#ifndef SOURCE_HASH
#define SOURCE_HASH ""
#endif

#define MAX_REMEMBERED 100000

static void put_digits(Py_UCS1 *out, int value, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        out[i] = (Py_UCS1)('0' + value % 10);
        value /= 10;
    }
}

/* "YYYY-MM-DD HH:MM:SS.ffffff" of a datetime, into the 26 characters at `out`. */
static void write_moment(Py_UCS1 *out, PyObject *value)
{
    put_digits(out, PyDateTime_GET_YEAR(value), 4);
    out[4] = '-';
    put_digits(out + 5, PyDateTime_GET_MONTH(value), 2);
    out[7] = '-';
    put_digits(out + 8, PyDateTime_GET_DAY(value), 2);
    out[10] = ' ';
    put_digits(out + 11, PyDateTime_DATE_GET_HOUR(value), 2);
    out[13] = ':';
    put_digits(out + 14, PyDateTime_DATE_GET_MINUTE(value), 2);
    out[16] = ':';
    put_digits(out + 17, PyDateTime_DATE_GET_SECOND(value), 2);
    out[19] = '.';
    put_digits(out + 20, PyDateTime_DATE_GET_MICROSECOND(value), 6);
}

static int is_exact_utc(PyObject *value)
{
    return PyDateTime_CheckExact(value) && PyDateTime_DATE_GET_TZINFO(value) == PyDateTime_TimeZone_UTC;
}

/* The text of an exact UTC datetime, or NULL (no exception) for any other value. */
static PyObject *utc_text(PyObject *value)
{
    if (!is_exact_utc(value))
        return NULL;
    PyObject *text = PyUnicode_New(26, 127);
    if (text != NULL)
        write_moment(PyUnicode_1BYTE_DATA(text), value);
    return text;
}

static PyObject *converted(PyObject *value, PyObject *processor, PyObject *remembered, int utc)
{
    if (utc) {
        PyObject *text = utc_text(value);
        if (text != NULL || PyErr_Occurred())
            return text;
    }
    PyObject *known = PyDict_GetItemWithError(remembered, value);
    if (known != NULL) {
        Py_INCREF(known);
        return known;
    }
    if (PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError))
            return NULL;
        PyErr_Clear(); /* unhashable: converted each time */
        return PyObject_CallOneArg(processor, value);
    }
    PyObject *result = PyObject_CallOneArg(processor, value);
    if (result == NULL)
        return NULL;
    if (PyDict_GET_SIZE(remembered) >= MAX_REMEMBERED)
        PyDict_Clear(remembered);
    if (PyDict_SetItem(remembered, value, result) < 0) {
        Py_DECREF(result);
        return NULL;
    }
    return result;
}

/* The conversions' parts, checked; their count, or -1 with an exception set. */
static Py_ssize_t read_conversions(PyObject *conversions, Py_ssize_t *positions, PyObject **processors,
                                   PyObject **remembered, int *utc)
{
    Py_ssize_t conversion_count = PyTuple_GET_SIZE(conversions);
    if (conversion_count > 64) {
        PyErr_SetString(PyExc_ValueError, "at most 64 conversions");
        return -1;
    }
    for (Py_ssize_t i = 0; i < conversion_count; i++) {
        PyObject *conversion = PyTuple_GET_ITEM(conversions, i);
        if (!PyTuple_Check(conversion) || PyTuple_GET_SIZE(conversion) != 4 ||
            !PyDict_Check(PyTuple_GET_ITEM(conversion, 2))) {
            PyErr_SetString(PyExc_TypeError, "a conversion is (position, processor, remembered: dict, utc)");
            return -1;
        }
        positions[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(conversion, 0));
        if (positions[i] < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "a position is not negative");
            return -1;
        }
        processors[i] = PyTuple_GET_ITEM(conversion, 1);
        remembered[i] = PyTuple_GET_ITEM(conversion, 2);
        utc[i] = PyObject_IsTrue(PyTuple_GET_ITEM(conversion, 3));
        if (utc[i] < 0)
            return -1;
    }
    return conversion_count;
}

static PyObject *convert(PyObject *module, PyObject *const *args, Py_ssize_t count)
{
    if (count != 2 || !PyList_Check(args[0]) || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "convert(rows: list, conversions: tuple)");
        return NULL;
    }
    PyObject *rows = args[0];
    Py_ssize_t positions[64];
    PyObject *processors[64], *remembered[64];
    int utc[64];
    Py_ssize_t conversion_count = read_conversions(args[1], positions, processors, remembered, utc);
    if (conversion_count < 0)
        return NULL;
    /* A snapshot of the list: a processor is Python code, and the rows must outlive it. */
    PyObject *snapshot = PySequence_Tuple(rows);
    if (snapshot == NULL)
        return NULL;
    Py_ssize_t row_count = PyTuple_GET_SIZE(snapshot);
    PyObject *result = PyList_New(row_count);
    if (result == NULL) {
        Py_DECREF(snapshot);
        return NULL;
    }
    for (Py_ssize_t r = 0; r < row_count; r++) {
        PyObject *row = PySequence_Tuple(PyTuple_GET_ITEM(snapshot, r));
        if (row == NULL)
            goto failed;
        Py_ssize_t width = PyTuple_GET_SIZE(row);
        PyObject *copy = PyTuple_New(width);
        if (copy == NULL) {
            Py_DECREF(row);
            goto failed;
        }
        for (Py_ssize_t c = 0; c < width; c++) {
            PyObject *item = PyTuple_GET_ITEM(row, c);
            Py_INCREF(item);
            PyTuple_SET_ITEM(copy, c, item);
        }
        Py_DECREF(row);
        PyList_SET_ITEM(result, r, copy);
        for (Py_ssize_t i = 0; i < conversion_count; i++) {
            if (positions[i] >= width) {
                PyErr_SetString(PyExc_IndexError, "a conversion's position is beyond the row");
                goto failed;
            }
            PyObject *value = converted(PyTuple_GET_ITEM(copy, positions[i]), processors[i], remembered[i], utc[i]);
            if (value == NULL)
                goto failed;
            Py_SETREF(((PyTupleObject *)copy)->ob_item[positions[i]], value);
        }
    }
    Py_DECREF(snapshot);
    return result;
failed:
    Py_DECREF(snapshot);
    Py_DECREF(result);
    return NULL;
}

/* --- rows packed for the writer process's pipe -------------------------------------------------
 *
 * pack() converts rows as convert() does and writes them straight into one bytes object, which
 * unpack() (in the writer process, the same build) turns back into the list convert() gives:
 * marshal.dumps of that list cost the reading side more than the conversion (each value held
 * elsewhere too goes through marshal's table of shared objects). Layout, in this machine's byte order: the row count and the width (uint32 each), then
 * each value as a tag and its bytes: 'N' None, 'T' True, 'F' False, 'i' int64, 'f' double,
 * 's' str (uint32 length, UTF-8). Any other value (an int past 64 bits, a str with a lone
 * surrogate, bytes) raises TypeError or ValueError: the caller falls back to convert(). */

typedef struct {
    char *data;
    size_t length, size;
} Buffer;

static int reserve(Buffer *buffer, size_t more)
{
    if (buffer->length + more <= buffer->size)
        return 0;
    size_t size = buffer->size ? buffer->size : 1 << 16;
    while (size < buffer->length + more)
        size *= 2;
    char *data = PyMem_Realloc(buffer->data, size);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    buffer->data = data;
    buffer->size = size;
    return 0;
}

static int put_bytes(Buffer *buffer, const void *bytes, size_t length)
{
    if (reserve(buffer, length) < 0)
        return -1;
    memcpy(buffer->data + buffer->length, bytes, length);
    buffer->length += length;
    return 0;
}

static int put_value(Buffer *buffer, PyObject *value)
{
    char tag;
    if (value == Py_None || value == Py_True || value == Py_False) {
        tag = value == Py_None ? 'N' : value == Py_True ? 'T' : 'F';
        return put_bytes(buffer, &tag, 1);
    }
    if (PyUnicode_CheckExact(value)) {
        Py_ssize_t length;
        const char *text = PyUnicode_AsUTF8AndSize(value, &length);
        if (text == NULL)
            return -1; /* a lone surrogate: UnicodeEncodeError, a ValueError */
        if (length > UINT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "a text too long to pack");
            return -1;
        }
        uint32_t packed_length = (uint32_t)length;
        tag = 's';
        if (reserve(buffer, 5 + (size_t)length) < 0)
            return -1;
        put_bytes(buffer, &tag, 1);
        put_bytes(buffer, &packed_length, 4);
        return put_bytes(buffer, text, (size_t)length);
    }
    if (PyLong_CheckExact(value)) {
        int overflow;
        long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow) {
            PyErr_SetString(PyExc_ValueError, "an int past 64 bits");
            return -1;
        }
        if (number == -1 && PyErr_Occurred())
            return -1;
        int64_t packed = (int64_t)number;
        tag = 'i';
        if (put_bytes(buffer, &tag, 1) < 0)
            return -1;
        return put_bytes(buffer, &packed, 8);
    }
    if (PyFloat_CheckExact(value)) {
        double number = PyFloat_AS_DOUBLE(value);
        tag = 'f';
        if (put_bytes(buffer, &tag, 1) < 0)
            return -1;
        return put_bytes(buffer, &number, 8);
    }
    PyErr_Format(PyExc_TypeError, "a %.100s value is not packed", Py_TYPE(value)->tp_name);
    return -1;
}

/* An exact UTC datetime's text ('s', its length, "YYYY-MM-DD HH:MM:SS.ffffff"), as utc_text
 * writes it, straight into the buffer. */
static int put_utc(Buffer *buffer, PyObject *value)
{
    uint32_t length = 26;
    if (reserve(buffer, 31) < 0)
        return -1;
    char *out = buffer->data + buffer->length;
    out[0] = 's';
    memcpy(out + 1, &length, 4);
    write_moment((Py_UCS1 *)out + 5, value);
    buffer->length += 31;
    return 0;
}

static PyObject *pack(PyObject *module, PyObject *const *args, Py_ssize_t count)
{
    if (count != 2 || !PyList_Check(args[0]) || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "pack(rows: list, conversions: tuple)");
        return NULL;
    }
    Py_ssize_t positions[64];
    PyObject *processors[64], *remembered[64];
    int utc[64];
    Py_ssize_t conversion_count = read_conversions(args[1], positions, processors, remembered, utc);
    if (conversion_count < 0)
        return NULL;
    /* A snapshot of the list, as convert() takes: a processor is Python code. */
    PyObject *rows = PySequence_Tuple(args[0]);
    if (rows == NULL)
        return NULL;
    Buffer buffer = {NULL, 0, 0};
    PyObject *packed = NULL, *row = NULL;
    Py_ssize_t row_count = PyTuple_GET_SIZE(rows), width = 0;
    signed char conversion_of[256];
    if (row_count > 0) {
        /* Each row is taken as a tuple once; the first one's width is every row's. */
        row = PySequence_Tuple(PyTuple_GET_ITEM(rows, 0));
        if (row == NULL)
            goto done;
        width = PyTuple_GET_SIZE(row);
    }
    if (row_count > UINT32_MAX || width > 256 || (row_count > 0 && width == 0)) {
        PyErr_SetString(PyExc_ValueError, "too many rows or columns to pack, or rows of none");
        goto done;
    }
    memset(conversion_of, -1, sizeof conversion_of);
    for (Py_ssize_t i = 0; i < conversion_count; i++) {
        if (row_count > 0 && positions[i] >= width) {
            PyErr_SetString(PyExc_IndexError, "a conversion's position is beyond the row");
            goto done;
        }
        if (positions[i] < 256) {
            if (conversion_of[positions[i]] >= 0) {
                /* convert() applies both in turn; the caller falls back to it */
                PyErr_SetString(PyExc_ValueError, "two conversions of one position");
                goto done;
            }
            conversion_of[positions[i]] = (signed char)i;
        }
    }
    uint32_t header[2] = {(uint32_t)row_count, (uint32_t)width};
    if (put_bytes(&buffer, header, sizeof header) < 0)
        goto done;
    for (Py_ssize_t r = 0; r < row_count; r++) {
        if (r > 0 && (row = PySequence_Tuple(PyTuple_GET_ITEM(rows, r))) == NULL)
            goto done;
        if (PyTuple_GET_SIZE(row) != width) {
            PyErr_SetString(PyExc_ValueError, "rows of different widths");
            goto done;
        }
        for (Py_ssize_t c = 0; c < width; c++) {
            PyObject *value = PyTuple_GET_ITEM(row, c);
            int i = conversion_of[c];
            if (i < 0) {
                if (put_value(&buffer, value) < 0)
                    goto done;
                continue;
            }
            if (utc[i] && is_exact_utc(value)) {
                if (put_utc(&buffer, value) < 0)
                    goto done;
                continue;
            }
            PyObject *stored = converted(value, processors[i], remembered[i], utc[i]);
            if (stored == NULL)
                goto done;
            int put = put_value(&buffer, stored);
            Py_DECREF(stored);
            if (put < 0)
                goto done;
        }
        Py_CLEAR(row);
    }
    packed = PyBytes_FromStringAndSize(buffer.data, (Py_ssize_t)buffer.length);
done:
    Py_XDECREF(row);
    PyMem_Free(buffer.data);
    Py_DECREF(rows);
    return packed;
}

static int take(const char **at, const char *end, void *out, size_t length)
{
    if ((size_t)(end - *at) < length) {
        PyErr_SetString(PyExc_ValueError, "packed rows cut short");
        return -1;
    }
    memcpy(out, *at, length);
    *at += length;
    return 0;
}

static PyObject *take_value(const char **at, const char *end)
{
    char tag;
    if (take(at, end, &tag, 1) < 0)
        return NULL;
    switch (tag) {
    case 'N':
        Py_RETURN_NONE;
    case 'T':
        Py_RETURN_TRUE;
    case 'F':
        Py_RETURN_FALSE;
    case 'i': {
        int64_t number;
        if (take(at, end, &number, 8) < 0)
            return NULL;
        return PyLong_FromLongLong((long long)number);
    }
    case 'f': {
        double number;
        if (take(at, end, &number, 8) < 0)
            return NULL;
        return PyFloat_FromDouble(number);
    }
    case 's': {
        uint32_t length;
        if (take(at, end, &length, 4) < 0)
            return NULL;
        if ((size_t)(end - *at) < length) {
            PyErr_SetString(PyExc_ValueError, "packed rows cut short");
            return NULL;
        }
        PyObject *text = PyUnicode_DecodeUTF8(*at, (Py_ssize_t)length, "strict");
        *at += length;
        return text;
    }
    default:
        PyErr_SetString(PyExc_ValueError, "not packed rows");
        return NULL;
    }
}

static PyObject *unpack(PyObject *module, PyObject *packed)
{
    if (!PyBytes_Check(packed)) {
        PyErr_SetString(PyExc_TypeError, "unpack(packed: bytes)");
        return NULL;
    }
    const char *at = PyBytes_AS_STRING(packed), *end = at + PyBytes_GET_SIZE(packed);
    uint32_t header[2];
    if (take(&at, end, header, sizeof header) < 0)
        return NULL;
    /* Each value takes a byte at least: a count past what the bytes can hold is not believed. */
    if ((header[0] > 0 && header[1] == 0) || (uint64_t)header[0] * header[1] > (uint64_t)(end - at)) {
        PyErr_SetString(PyExc_ValueError, "packed rows cut short");
        return NULL;
    }
    PyObject *rows = PyList_New(header[0]);
    if (rows == NULL)
        return NULL;
    for (uint32_t r = 0; r < header[0]; r++) {
        PyObject *row = PyTuple_New(header[1]);
        if (row == NULL)
            goto failed;
        PyList_SET_ITEM(rows, r, row);
        for (uint32_t c = 0; c < header[1]; c++) {
            PyObject *value = take_value(&at, end);
            if (value == NULL)
                goto failed;
            PyTuple_SET_ITEM(row, c, value);
        }
    }
    if (at != end) {
        PyErr_SetString(PyExc_ValueError, "packed rows run on");
        goto failed;
    }
    return rows;
failed:
    Py_DECREF(rows);
    return NULL;
}

static PyObject *format_utc(PyObject *module, PyObject *value)
{
    PyObject *text = utc_text(value);
    if (text == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return text;
}

static PyMethodDef methods[] = {
    {"convert", (PyCFunction)(void (*)(void))convert, METH_FASTCALL,
     "convert(rows, conversions) -> the rows as tuples with each conversion's value converted."},
    {"pack", (PyCFunction)(void (*)(void))pack, METH_FASTCALL,
     "pack(rows, conversions) -> convert()'s rows packed in bytes, for unpack()."},
    {"unpack", unpack, METH_O, "unpack(packed) -> the rows pack() was given, converted."},
    {"format_utc", format_utc, METH_O,
     "format_utc(value) -> 'YYYY-MM-DD HH:MM:SS.ffffff' for an exact datetime in UTC, else None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_bind_rows",
    .m_doc = "Row values converted for SQLite's executemany.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__bind_rows(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return NULL;
    PyObject *module = PyModule_Create(&module_definition);
    if (module != NULL && PyModule_AddStringConstant(module, "SOURCE_HASH", SOURCE_HASH) < 0)
        Py_CLEAR(module);
    return module;
}
