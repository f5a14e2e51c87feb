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

/* The text of an exact UTC datetime, or NULL (no exception) for any other value. */
static PyObject *utc_text(PyObject *value)
{
    if (!PyDateTime_CheckExact(value) || PyDateTime_DATE_GET_TZINFO(value) != PyDateTime_TimeZone_UTC)
        return NULL;
    PyObject *text = PyUnicode_New(26, 127);
    if (text == NULL)
        return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(text);
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

static PyObject *convert(PyObject *module, PyObject *const *args, Py_ssize_t count)
{
    if (count != 2 || !PyList_Check(args[0]) || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "convert(rows: list, conversions: tuple)");
        return NULL;
    }
    PyObject *rows = args[0], *conversions = args[1];
    Py_ssize_t conversion_count = PyTuple_GET_SIZE(conversions);
    Py_ssize_t positions[64];
    PyObject *processors[64], *remembered[64];
    int utc[64];
    if (conversion_count > 64) {
        PyErr_SetString(PyExc_ValueError, "at most 64 conversions");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < conversion_count; i++) {
        PyObject *conversion = PyTuple_GET_ITEM(conversions, i);
        if (!PyTuple_Check(conversion) || PyTuple_GET_SIZE(conversion) != 4 ||
            !PyDict_Check(PyTuple_GET_ITEM(conversion, 2))) {
            PyErr_SetString(PyExc_TypeError, "a conversion is (position, processor, remembered: dict, utc)");
            return NULL;
        }
        positions[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(conversion, 0));
        if (positions[i] < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "a position is not negative");
            return NULL;
        }
        processors[i] = PyTuple_GET_ITEM(conversion, 1);
        remembered[i] = PyTuple_GET_ITEM(conversion, 2);
        utc[i] = PyObject_IsTrue(PyTuple_GET_ITEM(conversion, 3));
        if (utc[i] < 0)
            return NULL;
    }
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
