#include "paylock.h"

#include <jansson.h>
#include <pthread.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *held; /* payment id → true */

bool paylock_try(const char *id)
{
    bool ok = false;
    if (id == NULL) {
        return false;
    }
    pthread_mutex_lock(&lock);
    if (held == NULL) {
        held = json_object();
    }
    if (held && json_object_get(held, id) == NULL) {
        ok = json_object_set_new(held, id, json_true()) == 0;
    }
    pthread_mutex_unlock(&lock);
    return ok;
}

void paylock_release(const char *id)
{
    if (id == NULL) {
        return;
    }
    pthread_mutex_lock(&lock);
    if (held) {
        json_object_del(held, id);
        if (json_object_size(held) == 0) {
            json_decref(held);
            held = NULL;
        }
    }
    pthread_mutex_unlock(&lock);
}
