"""Django admin for the shop. Orders are read-only here except through the services: deleting an
order (the delete page or the bulk action) soft-deletes it with ``order_soft_delete``, so every
delete writes its ``OrderDeleted`` event. Products and inventory are editable."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest

from orders.models import Customer, Inventory, Order, OrderItem, Payment, Product
from orders.services import order_soft_delete


class OrderItemInline(admin.TabularInline):
    model = OrderItem
    extra = 0
    can_delete = False
    fields = ("product", "sku", "product_name", "quantity", "unit_price", "line_total")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PaymentInline(admin.StackedInline):
    model = Payment
    extra = 0
    can_delete = False
    fields = ("method", "status", "amount", "created_at", "updated_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DeletedFilter(admin.SimpleListFilter):
    title = "deleted"
    parameter_name = "deleted"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "Not deleted"), ("yes", "Deleted")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Order]) -> QuerySet[Order]:
        if self.value() == "yes":
            return queryset.filter(deleted_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(deleted_at__isnull=True)
        return queryset


def _admin_id(request: HttpRequest) -> int:
    """Django admin serves only authenticated staff, whose user has an id."""
    if request.user.pk is None:
        raise PermissionDenied
    return int(request.user.pk)


def _soft_delete(request: HttpRequest, orders: QuerySet[Order]) -> int:
    count = 0
    for order_id in orders.values_list("pk", flat=True):
        order_soft_delete(order_id=order_id, deleted_by=_admin_id(request))
        count += 1
    return count


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "status", "total_amount", "currency", "version", "created_at", "deleted_at")
    list_filter = ("status", DeletedFilter)
    search_fields = ("=id", "user__email", "items__sku")
    list_select_related = ("user",)
    readonly_fields = (
        "user",
        "status",
        "total_amount",
        "currency",
        "version",
        "created_at",
        "updated_at",
        "deleted_at",
        "deleted_by",
    )
    fields = readonly_fields
    inlines = (OrderItemInline, PaymentInline)
    actions = ("soft_delete_selected",)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        # The stock bulk delete would show "related items will be deleted"; ours soft-deletes.
        actions.pop("delete_selected", None)
        return actions

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # orders are created through the API, which reserves stock and prices them

    @admin.action(description="Soft-delete selected orders", permissions=["delete"])
    def soft_delete_selected(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        count = _soft_delete(request, queryset)
        self.message_user(request, f"Soft-deleted {count} order(s).", messages.SUCCESS)

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[str], dict[str, int], set[str], list[str]]:
        # The confirmation page must not claim that items and payment go too: a soft delete
        # keeps every row and only marks the order.
        orders = [f"{order} (soft delete: the order is kept and marked deleted)" for order in objs]
        perms_needed = set() if self.has_delete_permission(request) else {"order"}
        return orders, {"orders": len(orders)}, perms_needed, []

    def delete_model(self, request: HttpRequest, obj: Order) -> None:
        order_soft_delete(order_id=obj.pk, deleted_by=_admin_id(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        _soft_delete(request, queryset)


class InventoryInline(admin.StackedInline):
    model = Inventory
    can_delete = False
    fields = ("quantity",)


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("id", "sku", "name", "price", "is_active", "stock")
    list_filter = ("is_active",)
    search_fields = ("sku", "name")
    list_select_related = ("inventory",)
    inlines = (InventoryInline,)

    @admin.display(description="stock")
    def stock(self, product: Product) -> int | None:
        inventory = getattr(product, "inventory", None)
        return inventory.quantity if inventory is not None else None


@admin.register(Inventory)
class InventoryAdmin(admin.ModelAdmin):
    list_display = ("product", "quantity", "updated_at")
    list_editable = ("quantity",)
    list_select_related = ("product",)
    search_fields = ("product__sku", "product__name")


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("id", "email", "name", "created_at")
    search_fields = ("email", "name")

    def get_readonly_fields(self, request: HttpRequest, obj: Customer | None = None) -> tuple[str, ...]:
        # Every order event carries the customer's email, and an edit here would write none, so
        # analytics would keep the old address: an existing customer's email is not editable.
        return ("email",) if obj is not None else ()
