/* rlcore.kernels._step_writer: the per-step write of a replay shard, in one C call.
 *
 * Reference it reproduces: the numpy write path of rlcore.buffers.storage.ShardWriter (ShardWriter._write,
 * one numpy row assignment `column[row] = step[key]` per stored field). For every step it accepts, it stores
 * exactly the bytes that path stores; tests/test_replay.py checks that byte for byte (the kernel's contract),
 * and ShardWriter.add chooses between the two with one explicit check: the kernel's own `write` returns False
 * for anything it does not cover, and the reference writes it.
 *
 * Why C: a shard write copies one vector step (six small arrays for a CartPole transition) into the packed
 * records. From Python every copy is a numpy row assignment of ~0.17 us, almost all of it dispatch, and one numba
 * call spends ~0.46 us unboxing its eight array arguments before it copies a byte. Here one METH_FASTCALL call
 * looks the keys up in the step dict, checks each value (an exact ndarray, C-contiguous, native byte order, the
 * stored dtype and shape) and memcpy's it into its field of every env's record: ~0.2 us for the whole step.
 *
 * The writer never converts anything. When a value is not exactly what is stored (another dtype, a list, a
 * tensor, a broadcastable shape, a strided view) or the key set differs, write() returns False having written
 * nothing, and the reference takes the step, which converts or raises the usual error. The extension is
 * optional (setup.py builds it where a C compiler is): without it every write takes the reference.
 *
 * Layout (see rlcore.buffers.storage.record_layout): records is one shard's uint8 [rows, num_envs, record_bytes],
 * C-contiguous; field f of env e at time row t starts at byte ((t * num_envs) + e) * record_bytes + offset[f] and
 * holds nbytes[f] bytes: row e of the step's value for that key, whose shape is [num_envs, *shape[f]].
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>
#include <string.h>

#if NPY_ABI_VERSION < 0x02000000 /* numpy 1.x headers: no PyDataType_ELSIZE */
#define PyDataType_ELSIZE(descr) ((descr)->elsize)
#endif

#define MAX_FIELDS 32
#define MAX_FIELD_DIMS (NPY_MAXDIMS - 1)

typedef struct {
    PyObject *key;                          /* interned str */
    int type_num;                           /* the stored numpy dtype */
    Py_ssize_t offset;                      /* byte offset in a record */
    Py_ssize_t nbytes;                      /* bytes per env */
    int ndim;                               /* dims after the env dim */
    npy_intp shape[MAX_FIELD_DIMS];
} Field;

typedef struct {
    PyObject_HEAD
    PyArrayObject *records;                 /* owned: keeps the storage alive */
    char *base;
    PyArrayObject *counters;                /* owned, or NULL: the storage's int64 header, flat */
    npy_int64 *committed;                   /* this shard's committed count in it, or NULL */
    Py_ssize_t rows, num_envs, record_bytes;
    Py_ssize_t num_fields;
    Field fields[MAX_FIELDS];
} StepWriter;

static void StepWriter_dealloc(StepWriter *self) {
    Py_XDECREF(self->records);
    Py_XDECREF(self->counters);
    for (Py_ssize_t i = 0; i < self->num_fields; i++) Py_XDECREF(self->fields[i].key);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* `items` as a fast sequence of at most `limit` items (a new reference), or NULL with an error naming `what`. */
static PyObject *bounded_sequence(PyObject *items, Py_ssize_t limit, const char *what) {
    PyObject *sequence = PySequence_Fast(items, "");
    if (sequence == NULL) {
        PyErr_Format(PyExc_TypeError, "%s must be a sequence, got %R", what, items);
        return NULL;
    }
    if (PySequence_Fast_GET_SIZE(sequence) > limit) {
        PyErr_Format(PyExc_ValueError, "%s: %zd items; the writer takes at most %zd", what,
                     PySequence_Fast_GET_SIZE(sequence), limit);
        Py_DECREF(sequence);
        return NULL;
    }
    return sequence;
}

static int parse_field(StepWriter *self, PyObject *spec, Field *field) {
    PyObject *key, *shape;
    if (!PyArg_ParseTuple(spec, "UinnO", &key, &field->type_num, &field->offset, &field->nbytes, &shape)) return -1;
    if (field->offset < 0 || field->nbytes < 0 || field->offset + field->nbytes > self->record_bytes) {
        PyErr_Format(PyExc_ValueError, "field %R (offset %zd, %zd bytes) lies outside the %zd-byte record", key,
                     field->offset, field->nbytes, self->record_bytes);
        return -1;
    }
    PyObject *dims = bounded_sequence(shape, MAX_FIELD_DIMS, "a field's shape (its dims)");
    if (dims == NULL) return -1;
    Py_ssize_t ndim = PySequence_Fast_GET_SIZE(dims);
    for (Py_ssize_t d = 0; d < ndim; d++) {
        field->shape[d] = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(dims, d));
        if (field->shape[d] == -1 && PyErr_Occurred()) {
            Py_DECREF(dims);
            return -1;
        }
    }
    Py_DECREF(dims);
    field->ndim = (int)ndim;
    PyArray_Descr *descr = PyArray_DescrFromType(field->type_num);
    if (descr == NULL) return -1;
    Py_ssize_t expected = (Py_ssize_t)PyDataType_ELSIZE(descr);
    Py_DECREF(descr);
    for (int d = 0; d < field->ndim; d++) expected *= field->shape[d];
    if (expected != field->nbytes) {
        PyErr_Format(PyExc_ValueError, "field %R: %zd bytes per env, but its dtype and shape make %zd", key,
                     field->nbytes, expected);
        return -1;
    }
    Py_INCREF(key);
    PyUnicode_InternInPlace(&key);
    field->key = key;
    return 0;
}

/* StepWriter(records, fields[, counters, slot]): records uint8 [rows, num_envs, record_bytes], C-contiguous and
 * writeable; fields a sequence of (key, dtype number, byte offset, bytes per env, shape after the env dim);
 * counters (optional) the storage's writeable C-contiguous int64 header, whose flat item `slot` counts this
 * shard's committed steps (what add() reads and advances). */
static int StepWriter_init(StepWriter *self, PyObject *args, PyObject *kwargs) {
    PyArrayObject *records;
    PyObject *specs;
    PyArrayObject *counters = NULL;
    Py_ssize_t slot = 0;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "StepWriter(records, fields) takes no keyword arguments");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "O!O|O!n", &PyArray_Type, &records, &specs, &PyArray_Type, &counters, &slot))
        return -1;
    if (counters != NULL && (PyArray_TYPE(counters) != NPY_INT64 || !PyArray_IS_C_CONTIGUOUS(counters) ||
                             !PyArray_ISWRITEABLE(counters) || slot < 0 || slot >= PyArray_SIZE(counters))) {
        PyErr_Format(PyExc_ValueError,
                     "counters must be a writeable C-contiguous int64 array holding flat item slot=%zd", slot);
        return -1;
    }
    if (PyArray_NDIM(records) != 3 || PyArray_TYPE(records) != NPY_UINT8 || !PyArray_IS_C_CONTIGUOUS(records) ||
        !PyArray_ISWRITEABLE(records)) {
        PyErr_SetString(PyExc_ValueError,
                        "records must be a writeable C-contiguous uint8 array [rows, num_envs, record_bytes]");
        return -1;
    }
    PyObject *fields = bounded_sequence(specs, MAX_FIELDS, "fields");
    if (fields == NULL) return -1;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(fields);
    for (Py_ssize_t i = 0; i < self->num_fields; i++) Py_CLEAR(self->fields[i].key); /* __init__ called again */
    self->num_fields = 0;
    Py_INCREF(records);
    Py_XDECREF(self->records);
    self->records = records;
    self->base = PyArray_BYTES(records);
    Py_XINCREF(counters);
    Py_XDECREF(self->counters);
    self->counters = counters;
    self->committed = counters != NULL ? (npy_int64 *)PyArray_DATA(counters) + slot : NULL;
    self->rows = PyArray_DIM(records, 0);
    self->num_envs = PyArray_DIM(records, 1);
    self->record_bytes = PyArray_DIM(records, 2);
    for (Py_ssize_t i = 0; i < count; i++) {
        if (parse_field(self, PySequence_Fast_GET_ITEM(fields, i), &self->fields[i]) < 0) {
            Py_DECREF(fields);
            return -1;
        }
        self->num_fields = i + 1;
    }
    Py_DECREF(fields);
    return 0;
}

/* The value is exactly what the field stores: [num_envs, *shape] of its dtype, C-contiguous, native order. */
static int matches(const StepWriter *self, const Field *field, PyObject *value) {
    if (!PyArray_CheckExact(value)) return 0;
    PyArrayObject *array = (PyArrayObject *)value;
    int type_num = PyArray_TYPE(array);
    if (type_num != field->type_num && !PyArray_EquivTypenums(type_num, field->type_num)) return 0;
    if (!PyArray_IS_C_CONTIGUOUS(array) || !PyArray_ISNOTSWAPPED(array)) return 0;
    if (PyArray_NDIM(array) != field->ndim + 1 || PyArray_DIM(array, 0) != self->num_envs) return 0;
    const npy_intp *dims = PyArray_DIMS(array);
    for (int d = 0; d < field->ndim; d++) {
        if (dims[d + 1] != field->shape[d]) return 0;
    }
    return 1;
}

/* Copies every key of the dict `step` into time row `row` (in range): 1 when written, 0 (nothing written) when
 * the keys or a value are not exactly the stored ones, -1 with an error set. */
static int write_row(StepWriter *self, PyObject *step, Py_ssize_t row) {
    if (!PyDict_CheckExact(step) || PyDict_GET_SIZE(step) != self->num_fields) return 0;
    const char *sources[MAX_FIELDS];
    for (Py_ssize_t i = 0; i < self->num_fields; i++) {
        PyObject *value = PyDict_GetItemWithError(step, self->fields[i].key); /* borrowed */
        if (value == NULL) return PyErr_Occurred() ? -1 : 0;
        if (!matches(self, &self->fields[i], value)) return 0;
        sources[i] = PyArray_BYTES((PyArrayObject *)value);
    }
    const Py_ssize_t num_envs = self->num_envs, record_bytes = self->record_bytes;
    char *row_start = self->base + row * num_envs * record_bytes;
    for (Py_ssize_t i = 0; i < self->num_fields; i++) {
        const Field *field = &self->fields[i];
        const char *source = sources[i];
        char *target = row_start + field->offset;
        for (Py_ssize_t env = 0; env < num_envs; env++) {
            memcpy(target, source, (size_t)field->nbytes);
            target += record_bytes;
            source += field->nbytes;
        }
    }
    return 1;
}

/* write(step, row) -> bool: copies every key of the dict `step` into time row `row`; False (nothing written)
 * when the keys or a value are not exactly the stored ones. */
static PyObject *StepWriter_write(StepWriter *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "write() takes 2 arguments (step, row), got %zd", nargs);
        return NULL;
    }
    Py_ssize_t row = PyLong_AsSsize_t(args[1]);
    if (row == -1 && PyErr_Occurred()) return NULL;
    if (row < 0 || row >= self->rows) {
        PyErr_Format(PyExc_IndexError, "row %zd is outside the buffer's %zd time rows", row, self->rows);
        return NULL;
    }
    int written = write_row(self, args[0], row);
    if (written < 0) return NULL;
    return PyBool_FromLong(written);
}

/* add(step) -> bool: writes `step` into the row after the last committed one (committed % rows), then commits
 * it (committed + 1, a release store: a reader that sees the count sees the row); False, with nothing written
 * or committed, where write() would return False. The same as ShardWriter's Python path, in one call. */
static PyObject *StepWriter_add(StepWriter *self, PyObject *step) {
    if (self->committed == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "add() needs the counters: build the writer with (records, fields, "
                                            "counters, slot)");
        return NULL;
    }
    const npy_int64 committed = __atomic_load_n(self->committed, __ATOMIC_ACQUIRE);
    if (committed < 0) {
        PyErr_Format(PyExc_ValueError, "the committed count is %lld; it must be >= 0", (long long)committed);
        return NULL;
    }
    int written = write_row(self, step, (Py_ssize_t)(committed % self->rows));
    if (written < 0) return NULL;
    if (written) __atomic_store_n(self->committed, committed + 1, __ATOMIC_RELEASE);
    return PyBool_FromLong(written);
}

static PyMethodDef StepWriter_methods[] = {
    {"write", (PyCFunction)(void (*)(void))StepWriter_write, METH_FASTCALL,
     "write(step, row) -> bool: copy a vector step's arrays into time row `row`; False if they don't match"},
    {"add", (PyCFunction)StepWriter_add, METH_O,
     "add(step) -> bool: write the step at the committed count's row and commit it; False if it doesn't match"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject StepWriterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "rlcore.kernels._step_writer.StepWriter",
    .tp_doc = "Copies a vector step's arrays into a replay shard's packed records in one call.",
    .tp_basicsize = sizeof(StepWriter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)StepWriter_init,
    .tp_dealloc = (destructor)StepWriter_dealloc,
    .tp_methods = StepWriter_methods,
};

static struct PyModuleDef step_writer_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_step_writer",
    .m_doc = "A replay shard's per-step write in C (optional); reproduces the numpy path of ShardWriter._write.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__step_writer(void) {
    import_array();
    if (PyType_Ready(&StepWriterType) < 0) return NULL;
    PyObject *module = PyModule_Create(&step_writer_module);
    if (module == NULL) return NULL;
    Py_INCREF(&StepWriterType);
    if (PyModule_AddObject(module, "StepWriter", (PyObject *)&StepWriterType) < 0) {
        Py_DECREF(&StepWriterType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
