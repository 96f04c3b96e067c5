"""Input and output schemas of the orders API. Outputs mirror the order snapshot of
docs/events.md, so the API and the events describe an order the same way."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from ninja import Field, Schema
from pydantic import ConfigDict, StringConstraints

from orders.models import PRICE_MAX_DIGITS, OrderStatus, PaymentMethod

MAX_ID = 2**63 - 1
MAX_PAGE_SIZE = 100
MAX_ITEMS_PER_ORDER = 100
MAX_QUANTITY_PER_ITEM = 1000

Id = Annotated[int, Field(ge=1, le=MAX_ID)]
NonBlank = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class StrictIn(Schema):
    # Unknown fields are refused rather than ignored: a client sending "total_amount" should learn
    # that the server computes it.
    model_config = ConfigDict(extra="forbid")


# --- pagination ---------------------------------------------------------------------------------


class PageQuery(Schema):
    page: int = Field(1, ge=1, le=1_000_000)
    page_size: int = Field(20, ge=1, le=MAX_PAGE_SIZE)


class PageOut(Schema):
    total: int  # capped at orders.selectors.MAX_LISTED; total_is_exact says whether it was reached
    total_is_exact: bool
    page: int
    page_size: int


# --- customers ----------------------------------------------------------------------------------


class CustomerIn(StrictIn):
    email: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=254)]
    name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = ""


class CustomerOut(Schema):
    id: int
    email: str
    name: str


# --- products -----------------------------------------------------------------------------------


class ProductIn(StrictIn):
    sku: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    price: Annotated[Decimal, Field(gt=0, max_digits=PRICE_MAX_DIGITS, decimal_places=2)]
    stock: Annotated[int, Field(ge=0, le=1_000_000_000)] = 0
    is_active: bool = True


class ProductOut(Schema):
    id: int
    sku: str
    name: str
    price: str
    is_active: bool
    stock: int


class ProductQuery(PageQuery):
    active_only: bool = False


# --- orders -------------------------------------------------------------------------------------


class OrderItemIn(StrictIn):
    product_id: Id
    quantity: Annotated[int, Field(ge=1, le=MAX_QUANTITY_PER_ITEM)]


class OrderIn(StrictIn):
    user_id: Id
    items: Annotated[list[OrderItemIn], Field(min_length=1, max_length=MAX_ITEMS_PER_ORDER)]
    payment_method: PaymentMethod = PaymentMethod.CARD


class OrderStatusIn(StrictIn):
    status: OrderStatus


class OrderQuery(PageQuery):
    user_id: Id | None = None
    status: OrderStatus | None = None
    include_deleted: bool = False


class OrderItemOut(Schema):
    product_id: int
    sku: str
    product_name: str
    quantity: int
    unit_price: str
    line_total: str


class PaymentOut(Schema):
    method: str
    status: str
    amount: str


class OrderOut(Schema):
    """The order snapshot (docs/events.md)."""

    order_id: int
    version: int
    user_id: int
    user_email: str
    status: str
    total_amount: str
    currency: str
    items_count: int
    items: list[OrderItemOut]
    payment: PaymentOut
    created_at: str
    updated_at: str
    deleted_at: str | None
    deleted_by: int | None


class CustomerPageOut(PageOut):
    items: list[CustomerOut]


class ProductPageOut(PageOut):
    items: list[ProductOut]


class OrderPageOut(PageOut):
    items: list[OrderOut]
