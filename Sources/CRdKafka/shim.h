#ifndef MAPBRIDGE_CRDKAFKA_SHIM_H
#define MAPBRIDGE_CRDKAFKA_SHIM_H

// librdkafka's consumer/producer API, then its in-process mock cluster (order matters).
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#endif
