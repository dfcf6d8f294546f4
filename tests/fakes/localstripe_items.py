"""localstripe with several subscription items, in Stripe's own wire format (applied in the fake's process only).

localstripe 1.15 answers 500 "Not implemented" to a subscription with more than one item. The launcher in
tests/billing/conftest.py calls `patch()` before serving, so that, as Stripe documents it
(https://docs.stripe.com/api/subscriptions/create, /update):

- create takes several `items[N][plan]` + `items[N][quantity]`; the first invoice bills all of them;
- update names existing items by `items[N][id]` (with a new `quantity` or `plan`), removes one with
  `items[N][id]` + `items[N][deleted]=true`, adds one with `items[N][plan]` and no id; items not named stay as
  they are; two items on one plan, or no item left, are a 400;
- create takes `collection_method=send_invoice` + `days_until_due` (a customer without a card is sent an invoice
  instead of being charged): the subscription starts active and its first invoice stays open.

Not modelled: the proration invoice items Stripe adds on an item change (nothing in the tests reads them).
Everything else is localstripe's own code.
"""

from __future__ import annotations

from typing import Any

from localstripe import resources as r


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in {"true", "1"}


def _quantity(item: dict[str, Any]) -> int:
    quantity = r.try_convert_to_int(item.get("quantity", 1))
    if type(quantity) is not int or quantity <= 0:
        raise r.UserError(400, "Bad request")
    return quantity


def _new_item(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict) or type(item.get("plan")) is not str or "id" in item:
        raise r.UserError(400, "Bad request")
    r.Plan._api_retrieve(item["plan"])  # 404 when it does not exist
    return {"plan": item["plan"], "quantity": _quantity(item), "metadata": item.get("metadata")}


def _item_object(sub: Any, item: dict[str, Any]) -> Any:
    return r.SubscriptionItem(
        subscription=sub.id, plan=item["plan"], quantity=item["quantity"], metadata=item.get("metadata")
    )


def _refresh_quantity(sub: Any) -> None:
    items = sub.items._list
    sub.quantity = items[0].quantity if len(items) == 1 else None  # Stripe: null with several items


_original: dict[str, Any] = {}  # localstripe's own Subscription methods, kept by patch()


def _collection(collection_method: Any, days_until_due: Any) -> tuple[str, int | None]:
    method = collection_method or "charge_automatically"
    days = r.try_convert_to_int(days_until_due) if days_until_due is not None else None
    if method not in {"charge_automatically", "send_invoice"}:
        raise r.UserError(400, "Bad request")
    if (method == "send_invoice") != (days is not None) or (days is not None and days < 0):
        raise r.UserError(400, "Bad request")
    return method, days


def _init(self, customer=None, items=None, collection_method=None, days_until_due=None, **kwargs):
    method, days = _collection(collection_method, days_until_due)
    extra: list[dict[str, Any]] = []
    if isinstance(items, list) and len(items) > 1:
        items, extra = items[:1], [_new_item(i) for i in items[1:]]
        plans = [i["plan"] for i in extra] + [items[0].get("plan")]
        if len(set(plans)) != len(plans):
            raise r.UserError(400, "Cannot add multiple subscription items with the same plan")
    self._extra_items = extra
    self._collection = method
    _original["__init__"](self, customer=customer, items=items, **kwargs)
    self.collection_method = method
    self.days_until_due = days
    _create_extra_items(self)  # when no invoice was made (a trial)


def _create_extra_items(self) -> None:
    for item in self.__dict__.pop("_extra_items", None) or []:
        self.items._list.append(_item_object(self, item))
    _refresh_quantity(self)


def _create_invoice(self):
    _create_extra_items(self)
    if getattr(self, "_collection", "charge_automatically") != "send_invoice":
        return _original["_create_invoice"](self)
    pending = [
        ii
        for ii in r.InvoiceItem._api_list_all(None, customer=self.customer, limit=99)._list
        if ii.invoice is None
    ]
    invoice = r.Invoice(
        customer=self.customer,
        subscription=self.id,
        items=pending + list(self.items._list),
        date=self.current_period_start,
    )
    invoice._finalize()
    invoice.collection_method = "send_invoice"
    self.status = "active"  # Stripe: a send_invoice subscription is active while its invoice is open
    return None


def _change_of(item: Any, current: dict[str, Any]) -> tuple[str, Any, dict[str, Any]]:
    """One entry of an update's `items`: ("add", None, item) | ("delete", si, {}) | ("change", si, fields)."""
    if not isinstance(item, dict):
        raise r.UserError(400, "Bad request")
    item_id = item.get("id")
    if item_id is None:
        return ("add", None, _new_item(item))
    if type(item_id) is not str or item_id not in current:
        raise r.UserError(400, f"Invalid subscription item: {item_id}")
    if _truthy(item.get("deleted")):
        return ("delete", current[item_id], {})
    change: dict[str, Any] = {}
    if item.get("plan") is not None:
        if type(item["plan"]) is not str:
            raise r.UserError(400, "Bad request")
        r.Plan._api_retrieve(item["plan"])
        change["plan"] = item["plan"]
    if item.get("quantity") is not None:
        change["quantity"] = _quantity(item)
    return ("change", current[item_id], change)


def _check_plans(self, changes: list[tuple[str, Any, dict[str, Any]]]) -> None:
    """Stripe's rules on the result: at least one item, one item per plan."""
    deleted = {si.id for kind, si, _ in changes if kind == "delete"}
    plans = [si.plan.id for si in self.items._list if si.id not in deleted]
    for kind, si, change in changes:
        if kind == "change" and "plan" in change:
            plans[plans.index(si.plan.id)] = change["plan"]
        elif kind == "add":
            plans.append(change["plan"])
    if not plans:
        raise r.UserError(400, "A subscription must have at least one active plan")
    if len(set(plans)) != len(plans):
        raise r.UserError(400, "Cannot add multiple subscription items with the same plan")


def _update(self, items=None, **kwargs):
    _original["_update"](self, **kwargs)
    if items is None:
        return
    if not isinstance(items, list) or not items:
        raise r.UserError(400, "Bad request")
    current = {si.id: si for si in self.items._list}
    changes = [_change_of(item, current) for item in items]
    _check_plans(self, changes)
    for kind, si, change in changes:  # everything was checked: now apply
        if kind == "delete":
            self.items._list.remove(si)
        elif kind == "add":
            self.items._list.append(_item_object(self, change))
        else:
            if "plan" in change:
                si.plan = r.Plan._api_retrieve(change["plan"])
            si.quantity = change.get("quantity", si.quantity)
    _refresh_quantity(self)


def patch() -> None:
    sub_cls = r.Subscription
    for name in ("__init__", "_update", "_create_invoice"):
        _original[name] = getattr(sub_cls, name)
    sub_cls.__init__ = _init
    sub_cls._create_invoice = _create_invoice
    sub_cls._update = _update
