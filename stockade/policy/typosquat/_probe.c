/* The packed tables' look-up loops (packed.py), in C: the same probes over the same
 * buffers, answering entry numbers; packed.py builds the values.
 *
 * A Probe holds a table's arrays as buffers (slots, filter, starts, key ends, blob)
 * for the table's life. A look-up hashes the key's UTF-8 bytes with CRC-32 (zlib's,
 * from a table made at import), tests the filter bit, walks the slots from the home
 * slot and compares the stored key. Every index read is bounds-checked against the
 * buffers (a damaged table reads as absent keys, never past its bytes); packed.py
 * checks a file's bytes before any look-up anyway.
 *
 * ABI is the contract with packed.py, which uses this module only where ABI is the one
 * it expects: bump it with any change of what a method takes or answers.
 * SOURCE_CRC is the CRC-32 of this file as it was built (setup.py), so a test notices
 * a build older than its source. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define ABI 1
#ifndef SOURCE_CRC
#define SOURCE_CRC 0
#endif

static uint32_t crc_table[256];

static void
crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

/* the running state over bytes (start from 0xFFFFFFFF, finish with ~) */
static inline uint32_t
crc_run(uint32_t state, const unsigned char *bytes, Py_ssize_t size)
{
    for (Py_ssize_t i = 0; i < size; i++)
        state = crc_table[(state ^ bytes[i]) & 0xFF] ^ (state >> 8);
    return state;
}

typedef struct {
    PyObject_HEAD
    Py_buffer slots, filter, starts, ends, blob;
    int held;            /* how many of the buffers above are held (released in order) */
    Py_ssize_t at;       /* where the keys and values start in blob */
    uint64_t width;      /* slots */
    uint64_t count;      /* entries */
} Probe;

static inline uint64_t
slot_at(const Probe *p, uint64_t slot)
{
    uint64_t held;
    memcpy(&held, (const char *)p->slots.buf + 8 * slot, 8);
    return held;
}

static inline uint32_t
u32_at(const Py_buffer *b, uint64_t i)
{
    uint32_t v;
    memcpy(&v, (const char *)b->buf + 4 * i, 4);
    return v;
}

/* The stored key of ``entry`` (NULL: out of the table's bounds), its size in *size. */
static inline const unsigned char *
stored(const Probe *p, uint64_t entry, Py_ssize_t *size)
{
    if (entry >= p->count)
        return NULL;
    uint64_t start = u32_at(&p->starts, entry), end = u32_at(&p->ends, entry);
    if (start > end || p->at + (Py_ssize_t)end > p->blob.len)
        return NULL;
    *size = (Py_ssize_t)(end - start);
    return (const unsigned char *)p->blob.buf + p->at + start;
}

/* The entry of the key whose CRC-32 is ``hashed`` and whose bytes are ``head`` then
 * ``tail`` (a deletion is its word's bytes either side of the deleted letter), or -1. */
static Py_ssize_t
find_parts(const Probe *p, uint32_t hashed, const unsigned char *head, Py_ssize_t head_size,
           const unsigned char *tail, Py_ssize_t tail_size)
{
    uint64_t width = p->width;
    if (!width)
        return -1;
    uint64_t slot = hashed % width;
    const unsigned char *filter = p->filter.buf;
    if (!(filter[slot] >> (hashed >> 29) & 1))
        return -1;
    for (uint64_t walked = 0; walked < width; walked++) {
        uint64_t held = slot_at(p, slot);
        if (!held)
            return -1;
        if ((uint32_t)(held >> 32) == hashed) {
            Py_ssize_t size;
            const unsigned char *key = stored(p, (held & 0xFFFFFFFFu) - 1, &size);
            if (key && size == head_size + tail_size && memcmp(key, head, head_size) == 0
                    && memcmp(key + head_size, tail, tail_size) == 0)
                return (Py_ssize_t)((held & 0xFFFFFFFFu) - 1);
        }
        slot = slot + 1 < width ? slot + 1 : 0;
    }
    return -1;
}

static Py_ssize_t
find_bytes(const Probe *p, const unsigned char *raw, Py_ssize_t size)
{
    return find_parts(p, ~crc_run(0xFFFFFFFFu, raw, size), raw, size, raw, 0);
}

/* The entry of ``key`` (str, as UTF-8 with lone surrogates passed; or bytes), or -1;
 * -2 with an exception set. */
static Py_ssize_t
find_key(const Probe *p, PyObject *key)
{
    if (PyUnicode_Check(key)) {
        if (PyUnicode_IS_ASCII(key))
            return find_bytes(p, PyUnicode_DATA(key), PyUnicode_GET_LENGTH(key));
        Py_ssize_t size;
        const char *raw = PyUnicode_AsUTF8AndSize(key, &size);
        if (raw)
            return find_bytes(p, (const unsigned char *)raw, size);
        PyErr_Clear();  /* a lone surrogate: as packed.py encodes it */
        PyObject *encoded = PyUnicode_AsEncodedString(key, "utf-8", "surrogatepass");
        if (!encoded)
            return -2;
        Py_ssize_t found = find_bytes(p, (const unsigned char *)PyBytes_AS_STRING(encoded),
                                      PyBytes_GET_SIZE(encoded));
        Py_DECREF(encoded);
        return found;
    }
    if (PyBytes_Check(key))
        return find_bytes(p, (const unsigned char *)PyBytes_AS_STRING(key),
                          PyBytes_GET_SIZE(key));
    PyErr_Format(PyExc_TypeError, "a key is str or bytes, not %.100s", Py_TYPE(key)->tp_name);
    return -2;
}

static void
probe_release(Probe *self)
{
    Py_buffer *buffers[] = {&self->slots, &self->filter, &self->starts, &self->ends,
                            &self->blob};
    for (int i = 0; i < self->held; i++)
        PyBuffer_Release(buffers[i]);
    self->held = 0;
}

static int
probe_init(Probe *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"slots", "filter", "starts", "ends", "blob", "at", "width",
                            "count", NULL};
    PyObject *objects[5];
    Py_ssize_t at;
    unsigned long long width, count;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOnKK:Probe", names, &objects[0],
                                     &objects[1], &objects[2], &objects[3], &objects[4],
                                     &at, &width, &count))
        return -1;
    probe_release(self);
    Py_buffer *buffers[] = {&self->slots, &self->filter, &self->starts, &self->ends,
                            &self->blob};
    for (int i = 0; i < 5; i++) {
        if (PyObject_GetBuffer(objects[i], buffers[i], PyBUF_SIMPLE) < 0) {
            probe_release(self);
            return -1;
        }
        self->held = i + 1;
    }
    if ((uint64_t)self->slots.len < 8 * (uint64_t)width
            || (uint64_t)self->filter.len < (uint64_t)width
            || (uint64_t)self->starts.len < 4 * ((uint64_t)count + 1)
            || (uint64_t)self->ends.len < 4 * (uint64_t)count
            || at < 0 || at > self->blob.len || count > width) {
        probe_release(self);
        PyErr_SetString(PyExc_ValueError, "packed table: arrays shorter than its sizes");
        return -1;
    }
    self->at = at;
    self->width = width;
    self->count = count;
    return 0;
}

static void
probe_dealloc(Probe *self)
{
    probe_release(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
probe_find(Probe *self, PyObject *key)
{
    Py_ssize_t found = find_key(self, key);
    return found == -2 ? NULL : PyLong_FromSsize_t(found);
}

/* The entries of those of ``keys`` (an iterable of str or bytes) held, in their
 * order: each an int, or with ``paired`` a (key, entry) tuple. */
static PyObject *
collect(Probe *self, PyObject *keys, int paired)
{
    PyObject *out = PyList_New(0), *iterator = PyObject_GetIter(keys), *key;
    if (!out || !iterator)
        goto fail;
    while ((key = PyIter_Next(iterator))) {
        Py_ssize_t found = find_key(self, key);
        PyObject *item = NULL;
        if (found >= 0)
            item = paired ? Py_BuildValue("(On)", key, found) : PyLong_FromSsize_t(found);
        Py_DECREF(key);
        if (found == -2)
            goto fail;
        if (found >= 0) {
            if (!item || PyList_Append(out, item) < 0) {
                Py_XDECREF(item);
                goto fail;
            }
            Py_DECREF(item);
        }
    }
    if (PyErr_Occurred())
        goto fail;
    Py_DECREF(iterator);
    return out;
fail:
    Py_XDECREF(iterator);
    Py_XDECREF(out);
    return NULL;
}

/* found(keys): the entries of those of ``keys`` held, in their order. */
static PyObject *
probe_found(Probe *self, PyObject *keys)
{
    return collect(self, keys, 0);
}

/* found_with(keys): (key, entry) of those of ``keys`` held, in their order. */
static PyObject *
probe_found_with(Probe *self, PyObject *keys)
{
    return collect(self, keys, 1);
}

/* deletions(word): the entries of an ASCII ``word``'s one-letter deletions held, then
 * of ``word`` itself, each deletion made once (a run of one letter deleted at its
 * first); None where ``word`` is not ASCII (packed.py looks those up itself). */
static PyObject *
probe_deletions(Probe *self, PyObject *word)
{
    if (!PyUnicode_Check(word)) {
        PyErr_Format(PyExc_TypeError, "a word is str, not %.100s", Py_TYPE(word)->tp_name);
        return NULL;
    }
    if (!PyUnicode_IS_ASCII(word))
        Py_RETURN_NONE;
    const unsigned char *raw = PyUnicode_DATA(word);
    Py_ssize_t size = PyUnicode_GET_LENGTH(word);
    PyObject *out = PyList_New(0);
    if (!out || !self->width)
        return out;
    uint32_t head = 0xFFFFFFFFu;  /* the CRC state over raw[:i] */
    int last = -1;
    for (Py_ssize_t i = 0; i <= size; i++) {
        Py_ssize_t found;
        if (i < size) {
            if (raw[i] != last) {
                last = raw[i];
                uint32_t hashed = ~crc_run(head, raw + i + 1, size - i - 1);
                found = find_parts(self, hashed, raw, i, raw + i + 1, size - i - 1);
            } else {
                found = -1;  /* the run's deletion, made at its first letter */
            }
            head = crc_run(head, raw + i, 1);
        } else {
            found = find_parts(self, ~head, raw, size, raw, 0);
        }
        if (found >= 0) {
            PyObject *entry = PyLong_FromSsize_t(found);
            if (!entry || PyList_Append(out, entry) < 0) {
                Py_XDECREF(entry);
                Py_DECREF(out);
                return NULL;
            }
            Py_DECREF(entry);
        }
    }
    return out;
}

static PyMethodDef probe_methods[] = {
    {"find", (PyCFunction)probe_find, METH_O,
     "find(key) -> the entry of key (str or bytes), or -1"},
    {"found", (PyCFunction)probe_found, METH_O,
     "found(keys) -> the entries of those of keys held, in their order"},
    {"found_with", (PyCFunction)probe_found_with, METH_O,
     "found_with(keys) -> (key, entry) of those of keys held, in their order"},
    {"deletions", (PyCFunction)probe_deletions, METH_O,
     "deletions(word) -> the entries of an ASCII word's deletions held, then of the word; "
     "None where the word is not ASCII"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ProbeType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "stockade.policy.typosquat._probe.Probe",
    .tp_basicsize = sizeof(Probe),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Probe(slots, filter, starts, ends, blob, at, width, count): a packed "
              "table's look-ups over its buffers",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)probe_init,
    .tp_dealloc = (destructor)probe_dealloc,
    .tp_methods = probe_methods,
};

static PyObject *
module_crc32(PyObject *module, PyObject *data)
{
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    uint32_t crc = ~crc_run(0xFFFFFFFFu, view.buf, view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(crc);
}

static PyMethodDef module_methods[] = {
    {"crc32", (PyCFunction)module_crc32, METH_O,
     "crc32(data) -> the CRC-32 a look-up hashes a key with (zlib.crc32's)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef probe_module = {
    PyModuleDef_HEAD_INIT, "_probe",
    "The packed tables' look-up loops in C (see packed.py).", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__probe(void)
{
    crc_init();
    if (PyType_Ready(&ProbeType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&probe_module);
    if (!module)
        return NULL;
    PyObject *crc = PyLong_FromUnsignedLong(SOURCE_CRC);
    if (!crc || PyModule_AddIntConstant(module, "ABI", ABI) < 0
            || PyModule_AddObjectRef(module, "SOURCE_CRC", crc) < 0
            || PyModule_AddObjectRef(module, "Probe", (PyObject *)&ProbeType) < 0) {
        Py_XDECREF(crc);
        Py_DECREF(module);
        return NULL;
    }
    Py_DECREF(crc);
    return module;
}
