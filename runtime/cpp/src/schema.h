// A subset of JSON Schema (draft 2020-12) for checking JSON task outputs, as the Python
// verifier does with the jsonschema package: type, properties, required,
// additionalProperties, items, enum, const, minLength, maxLength, pattern, minimum,
// maximum, exclusiveMinimum, exclusiveMaximum, minItems, maxItems (annotations such as
// title and description are ignored). Any other keyword is TINYLLM_UNSUPPORTED.
#pragma once

#include <string>

#include "json.h"

namespace tinyllm {

// "" when `value` matches `schema`, else the first problem found.
std::string schema_error(const json::Value& schema, const json::Value& value);

}  // namespace tinyllm
