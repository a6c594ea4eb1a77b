"""One INSERT for the many records of a batch of the inbox (its messages, their thread mirror).

Odoo's create() does, for each record, its defaults (default_get), its precomputed fields and a
cache entry for every field of the model (mail.message has about seventy), then the checks and
recomputations of the whole batch. For a batch of the inbox that per-record work cost more than
everything else the inbox does for a message. insert_records() does what create() does that
these records need, per batch rather than per record:

- the defaults of the fields not given, taken once for each set of given fields (the model's
  own default_get, so ir.default, context defaults and overrides apply);
- the log-access columns (create_uid, create_date, write_uid, write_date), as create() fills them;
- the precomputed fields not given (``precompute=True``), computed as create() computes them;
- every value converted for its column by its field (``convert_to_column_insert``), in one
  ``INSERT ... RETURNING id``;
- the stored fields that depend on them marked to recompute (``modified``, as create() does), the
  stored computed fields not given queued for computation, the cached one2many inverses of the
  many2one given updated, the Python constraints and the companies (``_check_company_auto``) of
  the given fields checked, the create access checked.

What it does not do: run the model's create() overrides (the caller does their work itself, as
the thread mirror gives what mail.message.create() would compute, see vm_whatsapp_message.py),
and x2many values, which it refuses. The values given (NULL for the stored fields no row gives)
are put in the cache, and the new records added to the cached one2many of the records they point
to, as create() does. Rows may give different fields: the others are the columns' DEFAULT.
"""

from collections import defaultdict

from odoo.models import MAGIC_COLUMNS, SQL_DEFAULT
from odoo.tools import SQL


def insert_records(model, vals_list):
    """Create records of ``model`` (a recordset, its environment's user and context apply) from
    ``vals_list`` in one INSERT; the records, in the order of ``vals_list``."""
    if not vals_list:
        return model.browse()
    model = model.browse()
    model.check_access("create")
    fields_ = model._fields
    defaults = {}  # given field names -> the defaults of the others
    rows, given = [], set()
    now, uid = model.env.cr.now(), model.env.uid
    for vals in vals_list:
        names = frozenset(vals)
        if names not in defaults:
            bad = [name for name in names if name not in fields_ or not fields_[name].column_type]
            if bad:
                raise ValueError(f"insert_records: no column for {sorted(bad)} on {model._name}")
            missing = [
                name
                for name, field in fields_.items()
                if field.store and field.column_type and name not in names and name not in MAGIC_COLUMNS
            ]
            defaults[names] = model.default_get(missing) if missing else {}
        row = {**defaults[names], **vals}
        if model._log_access:
            row.update(dict.fromkeys(("create_uid", "write_uid"), uid), create_date=now, write_date=now)
        rows.append(row)
    model._add_precomputed_values(rows)  # the fields computed before the INSERT (precompute=True)
    for row in rows:
        row.pop("__precomputed__", None)
        given.update(row)
    columns = sorted(name for name in given if name != "id")
    values = [
        tuple(
            fields_[name].convert_to_column_insert(row[name], model, row) if name in row else SQL_DEFAULT
            for name in columns
        )
        for row in rows
    ]
    model.env.cr.execute(
        SQL(
            "INSERT INTO %s (%s) VALUES %s RETURNING id",
            SQL.identifier(model._table),
            SQL(", ").join(map(SQL.identifier, columns)),
            SQL(", ").join(values),
        )
    )
    records = model.browse([row[0] for row in model.env.cr.fetchall()])
    cache = model.env.cache
    inverses = []
    for name, field in fields_.items():
        if name in given:
            values = [field.convert_to_cache(row.get(name), model) for row in rows]
            cache.update(records, field, values)
            if field.type in ("many2one", "many2one_reference") and model.pool.field_inverses[field]:
                inverses.append((field, values))
        elif field.store and field.compute:
            model.env.add_to_compute(field, records)
        elif field.type in ("one2many", "many2many"):
            cache.update(records, field, [()] * len(records))
        elif field.store and field.column_type:
            # inserted as NULL: cached so, as create() does (else a read fetches every field of the records)
            cache.update(records, field, [field.convert_to_cache(None, model)] * len(records))
    for field, values in inverses:  # once every value is in the cache (an inverse's domain reads them)
        # many2one: {value: ids}; many2one_reference: {(model, value): ids}
        models_ = records.mapped(field.model_field) if field.type == "many2one_reference" else [None] * len(records)
        by_value = defaultdict(list)
        for record_id, comodel, value in zip(records._ids, models_, values, strict=True):
            if value:
                by_value[(comodel, value)].append(record_id)
        for (comodel, value), ids in by_value.items():
            # only where a one2many of the record pointed to is cached: else it is read from the
            # database when needed (mail.message's res_id has an inverse on every mail.thread)
            if any(
                (comodel is None or inverse.model_name == comodel)
                and cache.contains(model.env[inverse.model_name].browse(value), inverse)
                for inverse in model.pool.field_inverses[field]
            ):
                field._update_inverses(records.browse(ids), value)
    computed_given = [fields_[name] for name in columns if fields_[name].compute]
    with model.env.protecting(computed_given, records):
        records.modified(columns, create=True)
    records._validate_fields(columns)
    if model._check_company_auto:
        records._check_company(columns)
    return records
