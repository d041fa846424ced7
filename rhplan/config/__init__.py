"""The configuration: HCL files parsed (fastparse, parse), their blocks loaded into a
model (load, blocks, modules), and expressions evaluated and decoded against the core's
and the providers' schemas (evaluate, decode, schema, provider_schema)."""
