/*
 * The stub HPU plugin: implements hpu_plugin.h on host memory, so the whole HPU path runs with no Gaudi present.
 *
 * What makes it a useful stand-in rather than a pass-through:
 * - Device memory has its own address space: module m's addresses start at HPU_STUB_MODULE_SPAN * (m + 1), and are
 *   mapped to host allocations through a table. A host pointer handed over as a device address, or a device address
 *   used as a host pointer in a copy, is caught instead of silently working.
 * - Addresses are never reused, so a freed allocation stays invalid for the life of the process.
 * - Each module's memory is capped at HPU_STUB_MEMORY_MB (default 4096), so out-of-memory paths can be tested.
 * - Every range a copy or kernel would touch is checked against one live allocation before anything is written.
 *
 * Kernels run on the host at launch, under one plugin-wide lock: that trivially honours stream order (and makes
 * every call thread-safe), at the price of no overlap between host and "device" work.
 *
 * Environment, read by synInitialize: HPU_STUB_MODULES (default 8), HPU_STUB_MEMORY_MB per module (default 4096),
 * HPU_STUB_THREADS for the kernels' worker pool (else SWIFTDRAFT_THREADS, else OPENBLAS_NUM_THREADS, else the
 * online cores: the same rule as the CPU backend, so both backends get the same parallelism under mpirun).
 * Module exclusivity is per process: separate processes each see all modules, as ranks on separate cards would.
 *
 * Test hook, read once by hpuGetPluginApi: HPU_STUB_ABI_MINOR=0 makes the library an ABI 1.0 plugin (its table says
 * 1.0 and the later GUIDs are unknown), so a host's handling of an older plugin is testable without building one;
 * HPU_STUB_ABI_MINOR=2 makes it a 1.2 plugin (its distillation loss refuses absent teacher entries beside present
 * ones, as 1.2 defined); HPU_STUB_ABI_MINOR=3 (or unset) is the current ABI, any other value makes hpuGetPluginApi
 * refuse (return NULL).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>

#include "hpu_plugin.h"
#include "stub_internal.h"

/* 16 TiB per module: far more than any allocation sequence of a process, so never-reused addresses never run out. */
#define HPU_STUB_MODULE_SPAN 0x100000000000ull
/* Never hand out the first page of a module, so small integers added to a base are not valid by accident. */
#define HPU_STUB_FIRST_OFFSET 0x10000ull
/* Gap between allocations, so an overrun of one allocation never lands inside the next. */
#define HPU_STUB_GUARD 4096ull
#define HPU_STUB_MAX_MODULES 64u
#define HPU_STUB_DEFAULT_MODULES 8u
#define HPU_STUB_DEFAULT_MEMORY_MB 4096ull
#define HPU_STUB_HANDLE_MAGIC 0x48505553u /* "HPUS" */

typedef struct Allocation {
    uint64_t address;
    uint64_t size;
    void* host;
} Allocation;

typedef struct Module {
    int acquired;
    uint64_t next_address;
    uint64_t used;
    Allocation* allocations; /* sorted by address: addresses only grow, so appending keeps the order */
    size_t count;
    size_t capacity;
} Module;

struct synStreamHandle_t {
    uint32_t magic;
    synDeviceId device;
};

struct synEventHandle_t {
    uint32_t magic;
    synDeviceId device;
    int recorded;
    uint64_t timestamp_ns;
};

/* Live handles, so a stale or foreign handle is rejected without being dereferenced. */
typedef struct HandleSet {
    void** items;
    size_t count;
    size_t capacity;
} HandleSet;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_initialized;
static uint32_t g_module_count;
static uint64_t g_capacity;
static Module* g_modules;
static HandleSet g_streams;
static HandleSet g_events;

static _Thread_local char t_detail[512];

synStatus hpu_fail(synStatus status, const char* format, ...) {
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(t_detail, sizeof t_detail, format, arguments);
    va_end(arguments);
    return status;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------------------------------------------------- */
/* Handle sets                                                                                                    */
/* ------------------------------------------------------------------------------------------------------------- */

static int handles_add(HandleSet* set, void* item) {
    if (set->count == set->capacity) {
        size_t capacity = set->capacity ? set->capacity * 2 : 16;
        void** items = realloc(set->items, capacity * sizeof *items);
        if (!items) return 0;
        set->items = items;
        set->capacity = capacity;
    }
    set->items[set->count++] = item;
    return 1;
}

static int handles_contains(const HandleSet* set, const void* item) {
    for (size_t i = 0; i < set->count; i++) {
        if (set->items[i] == item) return 1;
    }
    return 0;
}

static void handles_remove(HandleSet* set, const void* item) {
    for (size_t i = 0; i < set->count; i++) {
        if (set->items[i] == item) {
            set->items[i] = set->items[--set->count];
            return;
        }
    }
}

/* ------------------------------------------------------------------------------------------------------------- */
/* Address table                                                                                                  */
/* ------------------------------------------------------------------------------------------------------------- */

/* The index of the live allocation with the greatest address <= `address`, or -1. */
static ptrdiff_t find_allocation(const Module* module, uint64_t address) {
    size_t low = 0, high = module->count;
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        if (module->allocations[mid].address <= address) {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    return (ptrdiff_t)low - 1;
}

/*
 * Maps the device range [address, address + bytes) on `device` to a host pointer, or fails naming `what`.
 * The whole range must lie inside one live allocation: a range spanning two allocations is rejected even if both
 * are live, because a real device gives no such guarantee of adjacency.
 */
static synStatus resolve(synDeviceId device, uint64_t address, uint64_t bytes, uint64_t alignment, void** host,
                         const char* what) {
    *host = NULL;
    if (bytes == 0) return synSuccess;
    uint64_t span_index = address / HPU_STUB_MODULE_SPAN;
    if (span_index == 0 || span_index > g_module_count) {
        return hpu_fail(synInvalidDeviceAddress, "%s: 0x%llx is not a device address (a host pointer?)", what,
                        (unsigned long long)address);
    }
    if (span_index - 1 != device) {
        return hpu_fail(synInvalidDeviceAddress, "%s: 0x%llx belongs to module %llu, not to device %u", what,
                        (unsigned long long)address, (unsigned long long)(span_index - 1), device);
    }
    if (address % alignment != 0) {
        return hpu_fail(synInvalidDeviceAddress, "%s: 0x%llx is not %llu-byte aligned", what,
                        (unsigned long long)address, (unsigned long long)alignment);
    }
    const Module* module = &g_modules[device];
    ptrdiff_t index = find_allocation(module, address);
    if (index < 0 || address >= module->allocations[index].address + module->allocations[index].size) {
        return hpu_fail(synInvalidDeviceAddress, "%s: 0x%llx is not inside a live allocation (freed or never allocated)",
                        what, (unsigned long long)address);
    }
    const Allocation* allocation = &module->allocations[index];
    uint64_t offset = address - allocation->address;
    if (bytes > allocation->size - offset) {
        return hpu_fail(synInvalidDeviceAddress,
                        "%s: 0x%llx + %llu bytes runs %llu bytes past the end of allocation 0x%llx (%llu bytes)", what,
                        (unsigned long long)address, (unsigned long long)bytes,
                        (unsigned long long)(bytes - (allocation->size - offset)),
                        (unsigned long long)allocation->address, (unsigned long long)allocation->size);
    }
    *host = (char*)allocation->host + offset;
    return synSuccess;
}

/* Whether `address` would be accepted as a device address of any module: used to catch misdirected copies. */
static int looks_like_device_address(uint64_t address) {
    uint64_t span_index = address / HPU_STUB_MODULE_SPAN;
    if (span_index == 0 || span_index > g_module_count) return 0;
    const Module* module = &g_modules[span_index - 1];
    ptrdiff_t index = find_allocation(module, address);
    return index >= 0 && address < module->allocations[index].address + module->allocations[index].size;
}

static void module_free_all(Module* module) {
    for (size_t i = 0; i < module->count; i++) free(module->allocations[i].host);
    module->count = 0;
    module->used = 0;
}

/* ------------------------------------------------------------------------------------------------------------- */
/* Library                                                                                                        */
/* ------------------------------------------------------------------------------------------------------------- */

/* Parses a positive integer environment variable; 0 if unset, -1 if malformed. */
static long long env_positive(const char* name) {
    const char* text = getenv(name);
    if (!text || !*text) return 0;
    char* end = NULL;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno != 0 || *end != '\0' || value <= 0) return -1;
    return value;
}

static int configured_threads(void) {
    const char* names[] = {"HPU_STUB_THREADS", "SWIFTDRAFT_THREADS", "OPENBLAS_NUM_THREADS"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        long long value = env_positive(names[i]);
        if (value > 0) return value > 256 ? 256 : (int)value;
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}

static synStatus stub_initialize(void) {
    pthread_mutex_lock(&g_lock);
    if (g_initialized) {
        pthread_mutex_unlock(&g_lock);
        return hpu_fail(synObjectAlreadyInitialized, "synInitialize: already initialised");
    }
    long long modules = env_positive("HPU_STUB_MODULES");
    long long megabytes = env_positive("HPU_STUB_MEMORY_MB");
    if (modules < 0 || modules > (long long)HPU_STUB_MAX_MODULES) {
        pthread_mutex_unlock(&g_lock);
        return hpu_fail(synInvalidArgument, "synInitialize: HPU_STUB_MODULES=%s is not an integer in 1...%u",
                        getenv("HPU_STUB_MODULES"), HPU_STUB_MAX_MODULES);
    }
    if (megabytes < 0 || megabytes > (1ll << 40)) {
        pthread_mutex_unlock(&g_lock);
        return hpu_fail(synInvalidArgument, "synInitialize: HPU_STUB_MEMORY_MB=%s is not a positive integer",
                        getenv("HPU_STUB_MEMORY_MB"));
    }
    g_module_count = modules ? (uint32_t)modules : HPU_STUB_DEFAULT_MODULES;
    g_capacity = (megabytes ? (uint64_t)megabytes : HPU_STUB_DEFAULT_MEMORY_MB) << 20;
    g_modules = calloc(g_module_count, sizeof *g_modules);
    if (!g_modules) {
        pthread_mutex_unlock(&g_lock);
        return hpu_fail(synOutOfHostMemory, "synInitialize: no host memory for the module table");
    }
    for (uint32_t m = 0; m < g_module_count; m++) {
        g_modules[m].next_address = HPU_STUB_MODULE_SPAN * (m + 1) + HPU_STUB_FIRST_OFFSET;
    }
    int threads = configured_threads();
    /* The heavy kernels split work over the pool and then call BLAS per chunk, like the CPU backend; gemm alone
     * lets OpenBLAS use the same number of threads. */
    openblas_set_num_threads(threads);
    hpu_pool_start(threads);
    g_initialized = 1;
    pthread_mutex_unlock(&g_lock);
    return synSuccess;
}

static synStatus stub_destroy(void) {
    pthread_mutex_lock(&g_lock);
    if (!g_initialized) {
        pthread_mutex_unlock(&g_lock);
        return hpu_fail(synObjectNotInitialized, "synDestroy: not initialised");
    }
    for (size_t i = 0; i < g_streams.count; i++) free(g_streams.items[i]);
    for (size_t i = 0; i < g_events.count; i++) free(g_events.items[i]);
    g_streams.count = 0;
    g_events.count = 0;
    for (uint32_t m = 0; m < g_module_count; m++) {
        module_free_all(&g_modules[m]);
        free(g_modules[m].allocations);
    }
    free(g_modules);
    g_modules = NULL;
    g_module_count = 0;
    hpu_pool_stop();
    g_initialized = 0;
    pthread_mutex_unlock(&g_lock);
    return synSuccess;
}

static const char* status_text(synStatus status) {
    switch (status) {
    case synSuccess: return "success";
    case synInvalidArgument: return "invalid argument";
    case synOutOfHostMemory: return "out of host memory";
    case synOutOfDeviceMemory: return "out of device memory";
    case synObjectAlreadyInitialized: return "already initialised";
    case synObjectNotInitialized: return "not initialised (call synInitialize first)";
    case synNoDeviceFound: return "no such device module";
    case synDeviceAlreadyAcquired: return "device already acquired";
    case synDeviceNotAcquired: return "device not acquired";
    case synInvalidDeviceAddress: return "invalid device address";
    case synInvalidHandle: return "invalid stream or event handle";
    case synUnsupported: return "unsupported";
    case synKernelFailed: return "kernel failed";
    case synFail: return "failure";
    }
    return "unknown status";
}

static synStatus stub_status_description(synStatus status, char* description, size_t length) {
    if (!description || length == 0) return synInvalidArgument;
    snprintf(description, length, "%s", status_text(status));
    return synSuccess;
}

static synStatus stub_last_error_detail(char* detail, size_t length) {
    if (!detail || length == 0) return synInvalidArgument;
    snprintf(detail, length, "%s", t_detail);
    return synSuccess;
}

/* Every entry point below takes the lock, then checks initialisation; these keep that pairing in one place. */
#define LOCK_INITIALIZED(function)                                                                               \
    do {                                                                                                         \
        pthread_mutex_lock(&g_lock);                                                                             \
        if (!g_initialized) {                                                                                    \
            pthread_mutex_unlock(&g_lock);                                                                       \
            return hpu_fail(synObjectNotInitialized, "%s: synInitialize has not been called", (function));      \
        }                                                                                                        \
    } while (0)
#define UNLOCK_RETURN(status)                                                                                    \
    do {                                                                                                         \
        synStatus unlock_status_ = (status);                                                                     \
        pthread_mutex_unlock(&g_lock);                                                                           \
        return unlock_status_;                                                                                   \
    } while (0)

/* Checks that `device` is an acquired device; under the lock. */
static synStatus check_device(synDeviceId device, const char* function) {
    if (device >= g_module_count || !g_modules[device].acquired) {
        return hpu_fail(synDeviceNotAcquired, "%s: device %u is not acquired", function, device);
    }
    return synSuccess;
}

/* ------------------------------------------------------------------------------------------------------------- */
/* Device and memory                                                                                              */
/* ------------------------------------------------------------------------------------------------------------- */

static synStatus stub_device_count(uint32_t* count) {
    if (!count) return hpu_fail(synInvalidArgument, "synDeviceGetCount: count is null");
    LOCK_INITIALIZED("synDeviceGetCount");
    *count = g_module_count;
    UNLOCK_RETURN(synSuccess);
}

static synStatus stub_device_acquire(synDeviceId* device, synModuleId module) {
    if (!device) return hpu_fail(synInvalidArgument, "synDeviceAcquireByModuleId: deviceId is null");
    LOCK_INITIALIZED("synDeviceAcquireByModuleId");
    if (module >= g_module_count) {
        UNLOCK_RETURN(hpu_fail(synNoDeviceFound, "synDeviceAcquireByModuleId: module %u does not exist (%u modules; "
                               "HPU_STUB_MODULES sets the count)", module, g_module_count));
    }
    if (g_modules[module].acquired) {
        UNLOCK_RETURN(hpu_fail(synDeviceAlreadyAcquired, "synDeviceAcquireByModuleId: module %u is already acquired",
                               module));
    }
    g_modules[module].acquired = 1;
    *device = module; /* the stub's device ids are the module ids: one process sees every module */
    UNLOCK_RETURN(synSuccess);
}

static synStatus stub_device_release(synDeviceId device) {
    LOCK_INITIALIZED("synDeviceRelease");
    synStatus status = check_device(device, "synDeviceRelease");
    if (status != synSuccess) UNLOCK_RETURN(status);
    for (size_t i = 0; i < g_streams.count;) {
        struct synStreamHandle_t* stream = g_streams.items[i];
        if (stream->device == device) {
            stream->magic = 0;
            free(stream);
            g_streams.items[i] = g_streams.items[--g_streams.count];
        } else {
            i++;
        }
    }
    for (size_t i = 0; i < g_events.count;) {
        struct synEventHandle_t* event = g_events.items[i];
        if (event->device == device) {
            event->magic = 0;
            free(event);
            g_events.items[i] = g_events.items[--g_events.count];
        } else {
            i++;
        }
    }
    module_free_all(&g_modules[device]);
    g_modules[device].acquired = 0;
    UNLOCK_RETURN(synSuccess);
}

static synStatus stub_memory_info(synDeviceId device, uint64_t* free_bytes, uint64_t* total_bytes) {
    if (!free_bytes || !total_bytes) return hpu_fail(synInvalidArgument, "synDeviceGetMemoryInfo: null output");
    LOCK_INITIALIZED("synDeviceGetMemoryInfo");
    synStatus status = check_device(device, "synDeviceGetMemoryInfo");
    if (status != synSuccess) UNLOCK_RETURN(status);
    *free_bytes = g_capacity - g_modules[device].used;
    *total_bytes = g_capacity;
    UNLOCK_RETURN(synSuccess);
}

static synStatus stub_malloc(synDeviceId device, uint64_t size, uint64_t requested, uint32_t flags,
                             uint64_t* buffer) {
    if (!buffer) return hpu_fail(synInvalidArgument, "synDeviceMalloc: buffer is null");
    LOCK_INITIALIZED("synDeviceMalloc");
    synStatus status = check_device(device, "synDeviceMalloc");
    if (status != synSuccess) UNLOCK_RETURN(status);
    if (size == 0) UNLOCK_RETURN(hpu_fail(synInvalidArgument, "synDeviceMalloc: size 0"));
    if (requested != 0) {
        UNLOCK_RETURN(hpu_fail(synUnsupported, "synDeviceMalloc: reqAddr must be 0 (the stub picks addresses)"));
    }
    if (flags & ~HPU_MALLOC_ZERO) {
        UNLOCK_RETURN(hpu_fail(synUnsupported, "synDeviceMalloc: unknown flags 0x%x", flags));
    }
    Module* module = &g_modules[device];
    uint64_t free_bytes = g_capacity - module->used;
    if (size > free_bytes) {
        UNLOCK_RETURN(hpu_fail(synOutOfDeviceMemory, "synDeviceMalloc: module %u: asked %llu bytes, %llu free of %llu",
                               device, (unsigned long long)size, (unsigned long long)free_bytes,
                               (unsigned long long)g_capacity));
    }
    uint64_t rounded = (size + 63) & ~63ull;
    uint64_t limit = HPU_STUB_MODULE_SPAN * (device + 2);
    if (module->next_address + rounded + HPU_STUB_GUARD > limit) {
        UNLOCK_RETURN(hpu_fail(synOutOfDeviceMemory, "synDeviceMalloc: module %u: address space exhausted", device));
    }
    if (module->count == module->capacity) {
        size_t capacity = module->capacity ? module->capacity * 2 : 64;
        Allocation* allocations = realloc(module->allocations, capacity * sizeof *allocations);
        if (!allocations) UNLOCK_RETURN(hpu_fail(synOutOfHostMemory, "synDeviceMalloc: no host memory for the table"));
        module->allocations = allocations;
        module->capacity = capacity;
    }
    void* host = aligned_alloc(64, rounded);
    if (!host) {
        UNLOCK_RETURN(hpu_fail(synOutOfHostMemory, "synDeviceMalloc: no host memory backing %llu bytes",
                               (unsigned long long)size));
    }
    if (flags & HPU_MALLOC_ZERO) memset(host, 0, rounded);
    uint64_t address = module->next_address;
    module->next_address = (address + rounded + HPU_STUB_GUARD + HPU_DEVICE_ALIGNMENT - 1) &
                           ~(uint64_t)(HPU_DEVICE_ALIGNMENT - 1);
    module->allocations[module->count++] = (Allocation){address, size, host};
    module->used += size;
    *buffer = address;
    UNLOCK_RETURN(synSuccess);
}

static synStatus stub_free(synDeviceId device, uint64_t buffer, uint32_t flags) {
    (void)flags;
    LOCK_INITIALIZED("synDeviceFree");
    synStatus status = check_device(device, "synDeviceFree");
    if (status != synSuccess) UNLOCK_RETURN(status);
    Module* module = &g_modules[device];
    ptrdiff_t index = find_allocation(module, buffer);
    if (index < 0 || module->allocations[index].address != buffer) {
        UNLOCK_RETURN(hpu_fail(synInvalidDeviceAddress,
                               "synDeviceFree: 0x%llx is not the start of a live allocation of device %u (double free?)",
                               (unsigned long long)buffer, device));
    }
    free(module->allocations[index].host);
    module->used -= module->allocations[index].size;
    memmove(&module->allocations[index], &module->allocations[index + 1],
            (module->count - (size_t)index - 1) * sizeof *module->allocations);
    module->count--;
    UNLOCK_RETURN(synSuccess);
}

/* ------------------------------------------------------------------------------------------------------------- */
/* Streams, copies, events                                                                                        */
/* ------------------------------------------------------------------------------------------------------------- */

static synStatus check_stream(synStreamHandle stream, const char* function) {
    if (!stream || !handles_contains(&g_streams, stream) || stream->magic != HPU_STUB_HANDLE_MAGIC) {
        return hpu_fail(synInvalidHandle, "%s: stream %p is not a live stream", function, (void*)stream);
    }
    return synSuccess;
}

static synStatus check_event(synEventHandle event, const char* function) {
    if (!event || !handles_contains(&g_events, event) || event->magic != HPU_STUB_HANDLE_MAGIC) {
        return hpu_fail(synInvalidHandle, "%s: event %p is not a live event", function, (void*)event);
    }
    return synSuccess;
}

static synStatus stub_stream_create(synStreamHandle* stream, synDeviceId device, uint32_t flags) {
    if (!stream) return hpu_fail(synInvalidArgument, "synStreamCreateGeneric: stream is null");
    LOCK_INITIALIZED("synStreamCreateGeneric");
    synStatus status = check_device(device, "synStreamCreateGeneric");
    if (status != synSuccess) UNLOCK_RETURN(status);
    if (flags != 0) UNLOCK_RETURN(hpu_fail(synUnsupported, "synStreamCreateGeneric: flags must be 0"));
    struct synStreamHandle_t* handle = calloc(1, sizeof *handle);
    if (!handle || !handles_add(&g_streams, handle)) {
        free(handle);
        UNLOCK_RETURN(hpu_fail(synOutOfHostMemory, "synStreamCreateGeneric: no host memory"));
    }
    handle->magic = HPU_STUB_HANDLE_MAGIC;
    handle->device = device;
    *stream = handle;
    UNLOCK_RETURN(synSuccess);
}

static synStatus stub_stream_destroy(synStreamHandle stream) {
    LOCK_INITIALIZED("synStreamDestroy");
    synStatus status = check_stream(stream, "synStreamDestroy");
    if (status != synSuccess) UNLOCK_RETURN(status);
    handles_remove(&g_streams, stream);
    stream->magic = 0;
    free(stream);
    UNLOCK_RETURN(synSuccess);
}

static synStatus stub_stream_synchronize(synStreamHandle stream) {
    LOCK_INITIALIZED("synStreamSynchronize");
    /* Work ran at issue, so a live stream is always idle; data errors were already returned by the launch. */
    UNLOCK_RETURN(check_stream(stream, "synStreamSynchronize"));
}

static synStatus stub_copy(synStreamHandle stream, uint64_t src, uint64_t size, uint64_t dst, synDmaDir direction) {
    LOCK_INITIALIZED("synMemCopyAsync");
    synStatus status = check_stream(stream, "synMemCopyAsync");
    if (status != synSuccess) UNLOCK_RETURN(status);
    if (size == 0) UNLOCK_RETURN(synSuccess);
    synDeviceId device = stream->device;
    void* from = NULL;
    void* to = NULL;
    switch (direction) {
    case HOST_TO_DRAM:
        if (src == 0) UNLOCK_RETURN(hpu_fail(synInvalidArgument, "synMemCopyAsync HOST_TO_DRAM: null host source"));
        if (looks_like_device_address(src)) {
            UNLOCK_RETURN(hpu_fail(synInvalidDeviceAddress,
                                   "synMemCopyAsync HOST_TO_DRAM: source 0x%llx is a device address "
                                   "(wrong direction? use DRAM_TO_DRAM)", (unsigned long long)src));
        }
        status = resolve(device, dst, size, 1, &to, "synMemCopyAsync HOST_TO_DRAM destination");
        from = (void*)(uintptr_t)src;
        break;
    case DRAM_TO_HOST:
        if (dst == 0) UNLOCK_RETURN(hpu_fail(synInvalidArgument, "synMemCopyAsync DRAM_TO_HOST: null host destination"));
        if (looks_like_device_address(dst)) {
            UNLOCK_RETURN(hpu_fail(synInvalidDeviceAddress,
                                   "synMemCopyAsync DRAM_TO_HOST: destination 0x%llx is a device address "
                                   "(wrong direction? use DRAM_TO_DRAM)", (unsigned long long)dst));
        }
        status = resolve(device, src, size, 1, &from, "synMemCopyAsync DRAM_TO_HOST source");
        to = (void*)(uintptr_t)dst;
        break;
    case DRAM_TO_DRAM:
        status = resolve(device, src, size, 1, &from, "synMemCopyAsync DRAM_TO_DRAM source");
        if (status == synSuccess) status = resolve(device, dst, size, 1, &to, "synMemCopyAsync DRAM_TO_DRAM destination");
        break;
    default:
        UNLOCK_RETURN(hpu_fail(synInvalidArgument, "synMemCopyAsync: unknown direction %d", (int)direction));
    }
    if (status != synSuccess) UNLOCK_RETURN(status);
    memmove(to, from, size);
    UNLOCK_RETURN(synSuccess);
}

static synStatus stub_event_create(synEventHandle* event, synDeviceId device, uint32_t flags) {
    if (!event) return hpu_fail(synInvalidArgument, "synEventCreate: event is null");
    LOCK_INITIALIZED("synEventCreate");
    synStatus status = check_device(device, "synEventCreate");
    if (status != synSuccess) UNLOCK_RETURN(status);
    if (flags != 0) UNLOCK_RETURN(hpu_fail(synUnsupported, "synEventCreate: flags must be 0"));
    struct synEventHandle_t* handle = calloc(1, sizeof *handle);
    if (!handle || !handles_add(&g_events, handle)) {
        free(handle);
        UNLOCK_RETURN(hpu_fail(synOutOfHostMemory, "synEventCreate: no host memory"));
    }
    handle->magic = HPU_STUB_HANDLE_MAGIC;
    handle->device = device;
    *event = handle;
    UNLOCK_RETURN(synSuccess);
}

static synStatus stub_event_record(synEventHandle event, synStreamHandle stream) {
    LOCK_INITIALIZED("synEventRecord");
    synStatus status = check_event(event, "synEventRecord");
    if (status == synSuccess) status = check_stream(stream, "synEventRecord");
    if (status != synSuccess) UNLOCK_RETURN(status);
    if (event->device != stream->device) {
        UNLOCK_RETURN(hpu_fail(synInvalidArgument, "synEventRecord: event of device %u on a stream of device %u",
                               event->device, stream->device));
    }
    /* The stream has already run everything issued before, so "reached" is now. */
    event->recorded = 1;
    event->timestamp_ns = now_ns();
    UNLOCK_RETURN(synSuccess);
}

static synStatus stub_event_synchronize(synEventHandle event) {
    LOCK_INITIALIZED("synEventSynchronize");
    UNLOCK_RETURN(check_event(event, "synEventSynchronize"));
}

static synStatus stub_event_elapsed(uint64_t* nanoseconds, synEventHandle start, synEventHandle end) {
    if (!nanoseconds) return hpu_fail(synInvalidArgument, "synEventElapsedTime: output is null");
    LOCK_INITIALIZED("synEventElapsedTime");
    synStatus status = check_event(start, "synEventElapsedTime start");
    if (status == synSuccess) status = check_event(end, "synEventElapsedTime end");
    if (status != synSuccess) UNLOCK_RETURN(status);
    if (!start->recorded || !end->recorded) {
        UNLOCK_RETURN(hpu_fail(synInvalidArgument, "synEventElapsedTime: an event was never recorded"));
    }
    if (start->device != end->device) {
        UNLOCK_RETURN(hpu_fail(synInvalidArgument, "synEventElapsedTime: events of different devices"));
    }
    *nanoseconds = end->timestamp_ns >= start->timestamp_ns ? end->timestamp_ns - start->timestamp_ns : 0;
    UNLOCK_RETURN(synSuccess);
}

static synStatus stub_event_destroy(synEventHandle event) {
    LOCK_INITIALIZED("synEventDestroy");
    synStatus status = check_event(event, "synEventDestroy");
    if (status != synSuccess) UNLOCK_RETURN(status);
    handles_remove(&g_events, event);
    event->magic = 0;
    free(event);
    UNLOCK_RETURN(synSuccess);
}

/* ------------------------------------------------------------------------------------------------------------- */
/* Kernel launch                                                                                                  */
/* ------------------------------------------------------------------------------------------------------------- */

/* The ABI MINOR this library presents (HPU_STUB_ABI_MINOR, read once; -1 when malformed). */
static pthread_once_t g_minor_once = PTHREAD_ONCE_INIT;
static int g_served_minor = HPU_PLUGIN_ABI_MINOR;

static void read_served_minor(void) {
    const char* text = getenv("HPU_STUB_ABI_MINOR");
    if (!text || !*text) return;
    char* end = NULL;
    long minor = strtol(text, &end, 10);
    g_served_minor = *end == '\0' && (minor == 0 || minor == 2 || minor == HPU_PLUGIN_ABI_MINOR) ? (int)minor : -1;
}

int hpu_served_minor(void) {
    pthread_once(&g_minor_once, read_served_minor);
    return g_served_minor;
}

/* What a kernel's checker and runner see: the validated launch, and the host view of its tensors. */
typedef struct Launch {
    const char* guid;
    synDeviceId device;
    const uint64_t* tensors;
    void* host[9];
} Launch;

/* `*out = a * b * c` if all are non-negative and the product fits, else 0. */
static int extent3(int64_t a, int64_t b, int64_t c, uint64_t* out) {
    if (a < 0 || b < 0 || c < 0) return 0;
    uint64_t ab, abc;
    if (__builtin_mul_overflow((uint64_t)a, (uint64_t)b, &ab)) return 0;
    if (__builtin_mul_overflow(ab, (uint64_t)c, &abc)) return 0;
    if (abc > (UINT64_MAX >> 3)) return 0;
    *out = abc;
    return 1;
}

/* Resolves tensor `index` as `elements` 4-byte elements. */
static synStatus bind(Launch* launch, uint32_t index, uint64_t elements, const char* name) {
    char what[96];
    snprintf(what, sizeof what, "%s tensor %u (%s)", launch->guid, index, name);
    if (elements > UINT64_MAX / 4) {
        return hpu_fail(synInvalidArgument, "%s: %llu elements overflow a byte count", what,
                        (unsigned long long)elements);
    }
    return resolve(launch->device, launch->tensors[index], elements * 4, 4, &launch->host[index], what);
}

#define BIND(launch, index, elements, name)                                                                      \
    do {                                                                                                         \
        synStatus bind_status_ = bind((launch), (index), (elements), (name));                                    \
        if (bind_status_ != synSuccess) return bind_status_;                                                     \
    } while (0)

#define BAD_PARAMS(launch, reason) hpu_fail(synInvalidArgument, "%s: %s", (launch)->guid, (reason))

static synStatus run_fill(Launch* l, const void* raw) {
    const HpuFillParams* p = raw;
    if (p->count < 0) return BAD_PARAMS(l, "count < 0");
    BIND(l, 0, (uint64_t)p->count, "x");
    hpu_fill(l->host[0], p->count, p->value);
    return synSuccess;
}

static synStatus run_scale(Launch* l, const void* raw) {
    const HpuScaleParams* p = raw;
    if (p->count < 0) return BAD_PARAMS(l, "count < 0");
    BIND(l, 0, (uint64_t)p->count, "x");
    hpu_scale(l->host[0], p->count, p->alpha);
    return synSuccess;
}

static synStatus run_axpy(Launch* l, const void* raw) {
    const HpuAxpyParams* p = raw;
    if (p->count < 0) return BAD_PARAMS(l, "count < 0");
    BIND(l, 0, (uint64_t)p->count, "x");
    BIND(l, 1, (uint64_t)p->count, "y");
    hpu_axpy(l->host[0], l->host[1], p->count, p->alpha);
    return synSuccess;
}

static synStatus run_add(Launch* l, const void* raw) {
    const HpuAddParams* p = raw;
    if (p->count < 0) return BAD_PARAMS(l, "count < 0");
    BIND(l, 0, (uint64_t)p->count, "a");
    BIND(l, 1, (uint64_t)p->count, "b");
    BIND(l, 2, (uint64_t)p->count, "out");
    hpu_add(l->host[0], l->host[1], l->host[2], p->count);
    return synSuccess;
}

static synStatus run_sum_sq(Launch* l, const void* raw) {
    const HpuSumSqParams* p = raw;
    if (p->count < 0) return BAD_PARAMS(l, "count < 0");
    BIND(l, 0, (uint64_t)p->count, "x");
    BIND(l, 1, 1, "result");
    hpu_sum_sq(l->host[0], p->count, l->host[1]);
    return synSuccess;
}

/* Elements a row-major `rows x columns` operand with leading dimension `ld` spans. */
static uint64_t matrix_extent(int64_t rows, int64_t columns, int64_t ld) {
    if (rows == 0 || columns == 0) return 0;
    return (uint64_t)(rows - 1) * (uint64_t)ld + (uint64_t)columns;
}

static synStatus run_gemm(Launch* l, const void* raw) {
    const HpuGemmParams* p = raw;
    const int64_t limit = 0x7FFFFFFF; /* cblas takes int */
    if (p->m < 0 || p->n < 0 || p->k < 0) return BAD_PARAMS(l, "m, n or k < 0");
    if (p->m > limit || p->n > limit || p->k > limit || p->lda > limit || p->ldb > limit || p->ldc > limit) {
        return BAD_PARAMS(l, "a size exceeds 2^31 - 1");
    }
    if (p->transA > 1 || p->transB > 1) return BAD_PARAMS(l, "transA and transB must be 0 or 1");
    int64_t a_rows = p->transA ? p->k : p->m, a_columns = p->transA ? p->m : p->k;
    int64_t b_rows = p->transB ? p->n : p->k, b_columns = p->transB ? p->k : p->n;
    if (p->lda < (a_columns > 1 ? a_columns : 1) || p->ldb < (b_columns > 1 ? b_columns : 1) ||
        p->ldc < (p->n > 1 ? p->n : 1)) {
        return BAD_PARAMS(l, "a leading dimension is shorter than its row");
    }
    if (p->m == 0 || p->n == 0) return synSuccess;
    BIND(l, 0, p->k ? matrix_extent(a_rows, a_columns, p->lda) : 0, "a");
    BIND(l, 1, p->k ? matrix_extent(b_rows, b_columns, p->ldb) : 0, "b");
    BIND(l, 2, matrix_extent(p->m, p->n, p->ldc), "c");
    hpu_gemm(p, l->host[0], l->host[1], l->host[2]);
    return synSuccess;
}

static synStatus run_embedding(Launch* l, const void* raw, int backward) {
    const HpuEmbeddingParams* p = raw;
    uint64_t rows_elements, table_elements;
    if (!extent3(p->count, p->dim, 1, &rows_elements) || !extent3(p->vocab, p->dim, 1, &table_elements) ||
        p->vocab > 0x7FFFFFFF) {
        return BAD_PARAMS(l, "count, dim or vocab out of range");
    }
    BIND(l, 0, (uint64_t)p->count, "tokens");
    if (backward) {
        BIND(l, 1, rows_elements, "dOut");
        BIND(l, 2, p->count ? table_elements : 0, "dTable");
        return hpu_embedding_bwd(l->host[0], l->host[1], l->host[2], p->count, p->dim, p->vocab);
    }
    BIND(l, 1, p->count ? table_elements : 0, "table");
    BIND(l, 2, rows_elements, "out");
    return hpu_embedding_fwd(l->host[0], l->host[1], l->host[2], p->count, p->dim, p->vocab);
}

static synStatus run_embedding_fwd(Launch* l, const void* raw) { return run_embedding(l, raw, 0); }
static synStatus run_embedding_bwd(Launch* l, const void* raw) { return run_embedding(l, raw, 1); }

static synStatus run_rms_norm_fwd(Launch* l, const void* raw) {
    const HpuRmsNormFwdParams* p = raw;
    uint64_t elements;
    if (!extent3(p->rows, p->dim, 1, &elements)) return BAD_PARAMS(l, "rows or dim out of range");
    if (p->rows == 0 || p->dim == 0) return synSuccess;
    BIND(l, 0, elements, "x");
    BIND(l, 1, (uint64_t)p->dim, "weight");
    BIND(l, 2, elements, "out");
    BIND(l, 3, (uint64_t)p->rows, "rstd");
    hpu_rms_norm_fwd(l->host[0], l->host[1], l->host[2], l->host[3], p->rows, p->dim, p->eps);
    return synSuccess;
}

static synStatus run_rms_norm_bwd(Launch* l, const void* raw) {
    const HpuRmsNormBwdParams* p = raw;
    uint64_t elements;
    if (!extent3(p->rows, p->dim, 1, &elements)) return BAD_PARAMS(l, "rows or dim out of range");
    if (p->rows == 0 || p->dim == 0) return synSuccess;
    BIND(l, 0, elements, "dOut");
    BIND(l, 1, elements, "x");
    BIND(l, 2, (uint64_t)p->dim, "weight");
    BIND(l, 3, (uint64_t)p->rows, "rstd");
    BIND(l, 4, elements, "dX");
    BIND(l, 5, (uint64_t)p->dim, "dWeight");
    hpu_rms_norm_bwd(l->host[0], l->host[1], l->host[2], l->host[3], l->host[4], l->host[5], p->rows, p->dim);
    return synSuccess;
}

static synStatus run_rope(Launch* l, const void* raw) {
    const HpuRopeParams* p = raw;
    uint64_t tokens, elements, table;
    if (!extent3(p->batch, p->seqLen, 1, &tokens) || !extent3((int64_t)tokens, p->heads, p->headDim, &elements) ||
        !extent3(p->seqLen, p->headDim / 2, 1, &table)) {
        return BAD_PARAMS(l, "batch, seqLen, heads or headDim out of range");
    }
    if (p->headDim % 2 != 0) return BAD_PARAMS(l, "headDim must be even");
    if (p->inverse > 1) return BAD_PARAMS(l, "inverse must be 0 or 1");
    if (elements == 0) return synSuccess;
    BIND(l, 0, elements, "x");
    BIND(l, 1, table, "cos");
    BIND(l, 2, table, "sin");
    hpu_rope(l->host[0], l->host[1], l->host[2], p);
    return synSuccess;
}

static synStatus attention_extents(Launch* l, const HpuAttentionParams* p, uint64_t* q_elements,
                                   uint64_t* kv_elements, uint64_t* lse_elements) {
    uint64_t tokens, row, kv_row;
    if (!extent3(p->batch, p->seqLen, 1, &tokens) || !extent3((int64_t)tokens, p->heads, p->headDim, q_elements) ||
        !extent3((int64_t)tokens, p->kvHeads, p->headDim, kv_elements) ||
        !extent3(p->batch, p->heads, p->seqLen, lse_elements) || !extent3(p->heads, p->headDim, 1, &row) ||
        !extent3(p->kvHeads, p->headDim, 1, &kv_row) || row > 0x7FFFFFFF || kv_row > 0x7FFFFFFF ||
        p->seqLen > 0x7FFFFFFF) {
        return BAD_PARAMS(l, "batch, seqLen, heads, kvHeads or headDim out of range");
    }
    if (p->kvHeads == 0 ? p->heads != 0 : p->heads % p->kvHeads != 0) {
        return BAD_PARAMS(l, "heads must be a multiple of kvHeads");
    }
    return synSuccess;
}

static synStatus run_attention_fwd(Launch* l, const void* raw) {
    const HpuAttentionParams* p = raw;
    uint64_t qe, kve, lsee;
    synStatus status = attention_extents(l, p, &qe, &kve, &lsee);
    if (status != synSuccess) return status;
    if (qe == 0) return synSuccess;
    BIND(l, 0, qe, "q");
    BIND(l, 1, kve, "k");
    BIND(l, 2, kve, "v");
    BIND(l, 3, qe, "out");
    BIND(l, 4, lsee, "lse");
    return hpu_attention_fwd(l->host[0], l->host[1], l->host[2], l->host[3], l->host[4], p);
}

static synStatus run_attention_bwd(Launch* l, const void* raw) {
    const HpuAttentionParams* p = raw;
    uint64_t qe, kve, lsee;
    synStatus status = attention_extents(l, p, &qe, &kve, &lsee);
    if (status != synSuccess) return status;
    if (qe == 0) return synSuccess;
    BIND(l, 0, qe, "dOut");
    BIND(l, 1, qe, "q");
    BIND(l, 2, kve, "k");
    BIND(l, 3, kve, "v");
    BIND(l, 4, qe, "out");
    BIND(l, 5, lsee, "lse");
    BIND(l, 6, qe, "dQ");
    BIND(l, 7, kve, "dK");
    BIND(l, 8, kve, "dV");
    return hpu_attention_bwd(l->host[0], l->host[1], l->host[2], l->host[3], l->host[4], l->host[5], l->host[6],
                             l->host[7], l->host[8], p);
}

static synStatus run_swiglu_fwd(Launch* l, const void* raw) {
    const HpuSwigluParams* p = raw;
    if (p->count < 0) return BAD_PARAMS(l, "count < 0");
    BIND(l, 0, (uint64_t)p->count, "gate");
    BIND(l, 1, (uint64_t)p->count, "up");
    BIND(l, 2, (uint64_t)p->count, "out");
    hpu_swiglu_fwd(l->host[0], l->host[1], l->host[2], p->count);
    return synSuccess;
}

static synStatus run_swiglu_bwd(Launch* l, const void* raw) {
    const HpuSwigluParams* p = raw;
    if (p->count < 0) return BAD_PARAMS(l, "count < 0");
    BIND(l, 0, (uint64_t)p->count, "dOut");
    BIND(l, 1, (uint64_t)p->count, "gate");
    BIND(l, 2, (uint64_t)p->count, "up");
    BIND(l, 3, (uint64_t)p->count, "dGate");
    BIND(l, 4, (uint64_t)p->count, "dUp");
    hpu_swiglu_bwd(l->host[0], l->host[1], l->host[2], l->host[3], l->host[4], p->count);
    return synSuccess;
}

static synStatus run_cross_entropy(Launch* l, const void* raw) {
    const HpuCrossEntropyParams* p = raw;
    uint64_t elements;
    if (!extent3(p->rows, p->vocab, 1, &elements) || p->vocab > 0x7FFFFFFF) {
        return BAD_PARAMS(l, "rows or vocab out of range");
    }
    if (p->rows > 0 && p->vocab == 0) return BAD_PARAMS(l, "vocab must be positive");
    BIND(l, 0, elements, "logits");
    BIND(l, 1, (uint64_t)p->rows, "targets");
    BIND(l, 2, (uint64_t)p->rows, "losses");
    return hpu_cross_entropy(l->host[0], l->host[1], l->host[2], p->rows, p->vocab, p->lossScale);
}

static synStatus run_adamw(Launch* l, const void* raw) {
    const HpuAdamWParams* p = raw;
    if (p->count < 0) return BAD_PARAMS(l, "count < 0");
    if (p->step < 1) return BAD_PARAMS(l, "step must be >= 1");
    BIND(l, 0, (uint64_t)p->count, "params");
    BIND(l, 1, (uint64_t)p->count, "grads");
    BIND(l, 2, (uint64_t)p->count, "m");
    BIND(l, 3, (uint64_t)p->count, "v");
    hpu_adamw(l->host[0], l->host[1], l->host[2], l->host[3], p);
    return synSuccess;
}

static synStatus run_distillation_loss(Launch* l, const void* raw) {
    const HpuDistillationLossParams* p = raw;
    uint64_t elements, teacher;
    if (!extent3(p->rows, p->vocab, 1, &elements) || !extent3(p->rows, p->topK, 1, &teacher) ||
        p->vocab > 0x7FFFFFFF) {
        return BAD_PARAMS(l, "rows, vocab or topK out of range");
    }
    if (p->topK < 1) return BAD_PARAMS(l, "topK must be positive");
    if (p->rows > 0 && p->vocab == 0) return BAD_PARAMS(l, "vocab must be positive");
    if (p->divergence != HPU_DIVERGENCE_KL && p->divergence != HPU_DIVERGENCE_TVD) {
        return BAD_PARAMS(l, "divergence must be HPU_DIVERGENCE_KL or HPU_DIVERGENCE_TVD");
    }
    if (!(p->kdWeight >= 0.0f && p->kdWeight <= 1.0f)) return BAD_PARAMS(l, "kdWeight must be in [0, 1]");
    if (p->reserved != 0) return BAD_PARAMS(l, "reserved must be 0");
    if (p->rows == 0) return synSuccess;
    BIND(l, 0, elements, "logits");
    BIND(l, 1, (uint64_t)p->rows, "targets");
    BIND(l, 2, teacher, "teacherIds");
    BIND(l, 3, teacher, "teacherLogprobs");
    BIND(l, 4, (uint64_t)p->rows, "losses");
    BIND(l, 5, (uint64_t)p->rows, "ceLosses");
    BIND(l, 6, (uint64_t)p->rows, "kdLosses");
    return hpu_distillation_loss(l->host[0], l->host[1], l->host[2], l->host[3], l->host[4], l->host[5],
                                 l->host[6], p);
}

/* ---- Decode kernels (ABI 1.1) ---- */

static synStatus run_rope_at_positions(Launch* l, const void* raw) {
    const HpuRopeAtPositionsParams* p = raw;
    uint64_t elements, table;
    if (!extent3(p->rows, p->heads, p->headDim, &elements) || !extent3(p->maxPositions, p->headDim / 2, 1, &table)) {
        return BAD_PARAMS(l, "rows, heads, headDim or maxPositions out of range");
    }
    if (p->headDim % 2 != 0) return BAD_PARAMS(l, "headDim must be even");
    if (elements == 0) return synSuccess;
    BIND(l, 0, elements, "x");
    BIND(l, 1, (uint64_t)p->rows, "positions");
    BIND(l, 2, table, "cos");
    BIND(l, 3, table, "sin");
    return hpu_rope_at_positions(l->host[0], l->host[1], l->host[2], l->host[3], p);
}

static synStatus run_kv_cache_write(Launch* l, const void* raw) {
    const HpuKvCacheWriteParams* p = raw;
    uint64_t rows_elements, slot_elements, cache_elements;
    if (!extent3(p->count, p->width, 1, &rows_elements) || !extent3(p->capacity, p->width, 1, &slot_elements) ||
        !extent3(p->slotCount, (int64_t)slot_elements, 1, &cache_elements)) {
        return BAD_PARAMS(l, "count, width, capacity or slotCount out of range");
    }
    if (rows_elements == 0) return synSuccess;
    BIND(l, 0, rows_elements, "rows");
    BIND(l, 1, cache_elements, "cache");
    BIND(l, 2, (uint64_t)p->count, "slots");
    BIND(l, 3, (uint64_t)p->count, "positions");
    return hpu_kv_cache_write(l->host[0], l->host[1], l->host[2], l->host[3], p);
}

static synStatus run_attention_over_cache(Launch* l, const void* raw) {
    const HpuAttentionOverCacheParams* p = raw;
    uint64_t q_elements, kv_row, cache_rows, cache_elements;
    if (!extent3(p->rows, p->heads, p->headDim, &q_elements) || !extent3(p->kvHeads, p->headDim, 1, &kv_row) ||
        !extent3(p->slotCount, p->capacity, 1, &cache_rows) ||
        !extent3((int64_t)cache_rows, (int64_t)kv_row, 1, &cache_elements)) {
        return BAD_PARAMS(l, "rows, heads, kvHeads, headDim, capacity or slotCount out of range");
    }
    if (p->kvHeads == 0 ? p->heads != 0 : p->heads % p->kvHeads != 0) {
        return BAD_PARAMS(l, "heads must be a multiple of kvHeads");
    }
    if (q_elements == 0) return synSuccess;
    BIND(l, 0, q_elements, "q");
    BIND(l, 1, cache_elements, "kCache");
    BIND(l, 2, cache_elements, "vCache");
    BIND(l, 3, q_elements, "out");
    BIND(l, 4, (uint64_t)p->rows, "slots");
    BIND(l, 5, (uint64_t)p->rows, "positions");
    return hpu_attention_over_cache(l->host[0], l->host[1], l->host[2], l->host[3], l->host[4], l->host[5], p);
}

static synStatus run_add_bias(Launch* l, const void* raw) {
    const HpuAddBiasParams* p = raw;
    uint64_t elements;
    if (!extent3(p->rows, p->width, 1, &elements)) return BAD_PARAMS(l, "rows or width out of range");
    if (elements == 0) return synSuccess;
    BIND(l, 0, elements, "x");
    BIND(l, 1, (uint64_t)p->width, "bias");
    hpu_add_bias(l->host[0], l->host[1], p->rows, p->width);
    return synSuccess;
}

typedef struct KernelEntry {
    const char* guid;
    size_t params_size;
    uint32_t tensors;
    synStatus (*run)(Launch* launch, const void* params);
    uint32_t minor; /* the ABI MINOR that introduced the GUID */
} KernelEntry;

static const KernelEntry k_kernels[] = {
    {HPU_GUID_FILL, sizeof(HpuFillParams), 1, run_fill, 0},
    {HPU_GUID_SCALE, sizeof(HpuScaleParams), 1, run_scale, 0},
    {HPU_GUID_AXPY, sizeof(HpuAxpyParams), 2, run_axpy, 0},
    {HPU_GUID_ADD, sizeof(HpuAddParams), 3, run_add, 0},
    {HPU_GUID_SUM_SQ, sizeof(HpuSumSqParams), 2, run_sum_sq, 0},
    {HPU_GUID_GEMM, sizeof(HpuGemmParams), 3, run_gemm, 0},
    {HPU_GUID_EMBEDDING_FWD, sizeof(HpuEmbeddingParams), 3, run_embedding_fwd, 0},
    {HPU_GUID_EMBEDDING_BWD, sizeof(HpuEmbeddingParams), 3, run_embedding_bwd, 0},
    {HPU_GUID_RMS_NORM_FWD, sizeof(HpuRmsNormFwdParams), 4, run_rms_norm_fwd, 0},
    {HPU_GUID_RMS_NORM_BWD, sizeof(HpuRmsNormBwdParams), 6, run_rms_norm_bwd, 0},
    {HPU_GUID_ROPE, sizeof(HpuRopeParams), 3, run_rope, 0},
    {HPU_GUID_ATTENTION_FWD, sizeof(HpuAttentionParams), 5, run_attention_fwd, 0},
    {HPU_GUID_ATTENTION_BWD, sizeof(HpuAttentionParams), 9, run_attention_bwd, 0},
    {HPU_GUID_SWIGLU_FWD, sizeof(HpuSwigluParams), 3, run_swiglu_fwd, 0},
    {HPU_GUID_SWIGLU_BWD, sizeof(HpuSwigluParams), 5, run_swiglu_bwd, 0},
    {HPU_GUID_CROSS_ENTROPY, sizeof(HpuCrossEntropyParams), 3, run_cross_entropy, 0},
    {HPU_GUID_ADAMW, sizeof(HpuAdamWParams), 4, run_adamw, 0},
    {HPU_GUID_ROPE_AT_POSITIONS, sizeof(HpuRopeAtPositionsParams), 4, run_rope_at_positions, 1},
    {HPU_GUID_KV_CACHE_WRITE, sizeof(HpuKvCacheWriteParams), 4, run_kv_cache_write, 1},
    {HPU_GUID_ATTENTION_OVER_CACHE, sizeof(HpuAttentionOverCacheParams), 6, run_attention_over_cache, 1},
    {HPU_GUID_ADD_BIAS, sizeof(HpuAddBiasParams), 2, run_add_bias, 1},
    {HPU_GUID_DISTILLATION_LOSS, sizeof(HpuDistillationLossParams), 7, run_distillation_loss, 2},
};

static synStatus stub_launch(synStreamHandle stream, const char* guid, const void* params, size_t params_size,
                             const uint64_t* tensors, uint32_t tensor_count) {
    if (!guid) return hpu_fail(synInvalidArgument, "synLaunchKernel: guid is null");
    const KernelEntry* kernel = NULL;
    for (size_t i = 0; i < sizeof k_kernels / sizeof k_kernels[0]; i++) {
        if (strcmp(k_kernels[i].guid, guid) == 0) {
            kernel = &k_kernels[i];
            break;
        }
    }
    if (!kernel || kernel->minor > (uint32_t)hpu_served_minor()) {
        return hpu_fail(synUnsupported, "synLaunchKernel: unknown kernel GUID \"%.64s\" (this plugin serves ABI %d.%d)",
                        guid, HPU_PLUGIN_ABI_MAJOR, hpu_served_minor());
    }
    if (!params || params_size != kernel->params_size) {
        return hpu_fail(synInvalidArgument, "%s: params must be %zu bytes, got %zu%s", kernel->guid,
                        kernel->params_size, params_size, params ? "" : " (null)");
    }
    if (tensor_count != kernel->tensors || !tensors) {
        return hpu_fail(synInvalidArgument, "%s: takes %u tensors, got %u%s", kernel->guid, kernel->tensors,
                        tensor_count, tensors ? "" : " (null array)");
    }
    /* A private, aligned copy: the caller's params may be unaligned, and may change once we return. */
    _Alignas(8) unsigned char local[64];
    memcpy(local, params, params_size);
    LOCK_INITIALIZED("synLaunchKernel");
    synStatus status = check_stream(stream, kernel->guid);
    if (status != synSuccess) UNLOCK_RETURN(status);
    Launch launch = {.guid = kernel->guid, .device = stream->device, .tensors = tensors};
    UNLOCK_RETURN(kernel->run(&launch, local));
}

/* ------------------------------------------------------------------------------------------------------------- */
/* Entry point                                                                                                    */
/* ------------------------------------------------------------------------------------------------------------- */

#define STUB_API_FUNCTIONS \
    .synInitialize = stub_initialize, \
    .synDestroy = stub_destroy, \
    .synStatusGetBriefDescription = stub_status_description, \
    .hpuGetLastErrorDetail = stub_last_error_detail, \
    .synDeviceGetCount = stub_device_count, \
    .synDeviceAcquireByModuleId = stub_device_acquire, \
    .synDeviceRelease = stub_device_release, \
    .synDeviceGetMemoryInfo = stub_memory_info, \
    .synDeviceMalloc = stub_malloc, \
    .synDeviceFree = stub_free, \
    .synStreamCreateGeneric = stub_stream_create, \
    .synStreamDestroy = stub_stream_destroy, \
    .synStreamSynchronize = stub_stream_synchronize, \
    .synMemCopyAsync = stub_copy, \
    .synEventCreate = stub_event_create, \
    .synEventRecord = stub_event_record, \
    .synEventSynchronize = stub_event_synchronize, \
    .synEventElapsedTime = stub_event_elapsed, \
    .synEventDestroy = stub_event_destroy, \
    .synLaunchKernel = stub_launch,

static const HpuPluginApi k_api = {
    .struct_size = HPU_PLUGIN_API_STRUCT_SIZE_CURRENT,
    .abi_version = HPU_PLUGIN_ABI_VERSION,
    .reserved = 0,
    STUB_API_FUNCTIONS
};

/* What HPU_STUB_ABI_MINOR=2 serves: the same functions, presented as 1.2. */
static const HpuPluginApi k_api_1_2 = {
    .struct_size = HPU_PLUGIN_API_STRUCT_SIZE_CURRENT,
    .abi_version = (HPU_PLUGIN_ABI_MAJOR << 16) | 2,
    .reserved = 0,
    STUB_API_FUNCTIONS
};

/* What HPU_STUB_ABI_MINOR=0 serves: the same functions, presented as 1.0 (whose table has the same size). */
static const HpuPluginApi k_api_1_0 = {
    .struct_size = HPU_PLUGIN_API_STRUCT_SIZE_1_0,
    .abi_version = (HPU_PLUGIN_ABI_MAJOR << 16) | 0,
    .reserved = 0,
    STUB_API_FUNCTIONS
};

_Static_assert(sizeof(HpuGemmParams) <= 64 && sizeof(HpuAdamWParams) <= 64 && sizeof(HpuDistillationLossParams) <= 64 &&
                   sizeof(HpuAttentionOverCacheParams) <= 64, "launch keeps params in 64 bytes");

__attribute__((visibility("default"))) const HpuPluginApi* hpuGetPluginApi(uint32_t abi_version) {
    if (HPU_PLUGIN_ABI_VERSION_MAJOR(abi_version) != HPU_PLUGIN_ABI_MAJOR) return NULL;
    switch (hpu_served_minor()) {
    case 0: return &k_api_1_0;
    case 2: return &k_api_1_2;
    case HPU_PLUGIN_ABI_MINOR: return &k_api;
    default: return NULL;
    }
}
