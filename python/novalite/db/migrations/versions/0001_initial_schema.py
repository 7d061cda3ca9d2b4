"""Initial schema: every table of docs/control-plane.md.

Revision ID: 0001
Revises:
Create Date: 2026-11-24 03:43:08.786388
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('aggregates',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_aggregates')),
        sa.UniqueConstraint('name', name=op.f('uq_aggregates_name'))
    )
    op.create_table('flavors',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('vcpus', sa.Integer(), nullable=False),
        sa.Column('memory_mb', sa.Integer(), nullable=False),
        sa.Column('root_gb', sa.Integer(), nullable=False),
        sa.Column('ephemeral_gb', sa.Integer(), nullable=False),
        sa.Column('swap', sa.Integer(), nullable=False),
        sa.Column('is_public', sa.Boolean(), nullable=False),
        sa.Column('extra_specs', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint('memory_mb > 0', name=op.f('ck_flavors_memory_mb_positive')),
        sa.CheckConstraint('root_gb >= 0 AND ephemeral_gb >= 0 AND swap >= 0', name=op.f('ck_flavors_disk_not_negative')),
        sa.CheckConstraint('vcpus > 0', name=op.f('ck_flavors_vcpus_positive')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_flavors'))
    )
    op.create_index('uq_flavors_name_live', 'flavors', ['name'], unique=True, sqlite_where=sa.text('deleted_at IS NULL'), postgresql_where=sa.text('deleted_at IS NULL'))
    op.create_table('images',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('path', sa.String(length=4096), nullable=False),
        sa.Column('disk_format', sa.String(length=32), nullable=False),
        sa.Column('size_bytes', sa.BigInteger(), nullable=True),
        sa.Column('properties', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_images'))
    )
    op.create_table('quota_usages',
        sa.Column('project_id', sa.String(length=255), nullable=False),
        sa.Column('resource', sa.String(length=64), nullable=False),
        sa.Column('in_use', sa.Integer(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint('in_use >= 0', name=op.f('ck_quota_usages_in_use_not_negative')),
        sa.PrimaryKeyConstraint('project_id', 'resource', name=op.f('pk_quota_usages'))
    )
    op.create_table('quotas',
        sa.Column('project_id', sa.String(length=255), nullable=False),
        sa.Column('resource', sa.String(length=64), nullable=False),
        sa.Column('hard_limit', sa.Integer(), nullable=False),
        sa.CheckConstraint('hard_limit >= -1', name=op.f('ck_quotas_hard_limit_valid')),
        sa.PrimaryKeyConstraint('project_id', 'resource', name=op.f('pk_quotas'))
    )
    op.create_table('server_groups',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('project_id', sa.String(length=255), nullable=False),
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.Column('policy', sa.String(length=32), nullable=False),
        sa.Column('max_server_per_host', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("policy IN ('affinity', 'anti-affinity', 'soft-affinity', 'soft-anti-affinity')", name=op.f('ck_server_groups_policy_known')),
        sa.CheckConstraint('max_server_per_host IS NULL OR max_server_per_host >= 1', name=op.f('ck_server_groups_max_server_per_host_positive')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_server_groups'))
    )
    op.create_index(op.f('ix_server_groups_project_id'), 'server_groups', ['project_id'], unique=False)
    op.create_table('services',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('binary', sa.String(length=64), nullable=False),
        sa.Column('endpoint', sa.String(length=255), nullable=True),
        sa.Column('disabled', sa.Boolean(), nullable=False),
        sa.Column('disabled_reason', sa.String(length=255), nullable=True),
        sa.Column('last_seen_up', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_services')),
        sa.UniqueConstraint('host', 'binary', name=op.f('uq_services_host_binary'))
    )
    op.create_table('traits',
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_traits'))
    )
    op.create_table('aggregate_hosts',
        sa.Column('aggregate_id', sa.String(length=36), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(['aggregate_id'], ['aggregates.id'], name=op.f('fk_aggregate_hosts_aggregate_id_aggregates'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('aggregate_id', 'host', name=op.f('pk_aggregate_hosts'))
    )
    op.create_index(op.f('ix_aggregate_hosts_host'), 'aggregate_hosts', ['host'], unique=False)
    op.create_table('aggregate_metadata',
        sa.Column('aggregate_id', sa.String(length=36), nullable=False),
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.Column('value', sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(['aggregate_id'], ['aggregates.id'], name=op.f('fk_aggregate_metadata_aggregate_id_aggregates'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('aggregate_id', 'key', name=op.f('pk_aggregate_metadata'))
    )
    op.create_table('instances',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('project_id', sa.String(length=255), nullable=False),
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.Column('flavor_id', sa.String(length=36), nullable=False),
        sa.Column('image_id', sa.String(length=36), nullable=True),
        sa.Column('vcpus', sa.Integer(), nullable=False),
        sa.Column('memory_mb', sa.Integer(), nullable=False),
        sa.Column('root_gb', sa.Integer(), nullable=False),
        sa.Column('ephemeral_gb', sa.Integer(), nullable=False),
        sa.Column('vm_state', sa.String(length=32), nullable=False),
        sa.Column('task_state', sa.String(length=32), nullable=True),
        sa.Column('power_state', sa.Integer(), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=True),
        sa.Column('node', sa.String(length=255), nullable=True),
        sa.Column('availability_zone', sa.String(length=255), nullable=True),
        sa.Column('metadata', sa.JSON(), nullable=False),
        sa.Column('reservation_id', sa.String(length=36), nullable=False),
        sa.Column('launched_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('group_id', sa.String(length=36), nullable=True),
        sa.CheckConstraint('attempts >= 0', name=op.f('ck_instances_attempts_not_negative')),
        sa.ForeignKeyConstraint(['flavor_id'], ['flavors.id'], name=op.f('fk_instances_flavor_id_flavors')),
        sa.ForeignKeyConstraint(['group_id'], ['server_groups.id'], name=op.f('fk_instances_group_id_server_groups'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_instances_image_id_images')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_instances'))
    )
    op.create_index(op.f('ix_instances_created_at_id'), 'instances', ['created_at', 'id'], unique=False)
    op.create_index(op.f('ix_instances_group_id'), 'instances', ['group_id'], unique=False)
    op.create_index(op.f('ix_instances_host'), 'instances', ['host'], unique=False)
    op.create_index(op.f('ix_instances_project_id_created_at_id'), 'instances', ['project_id', 'created_at', 'id'], unique=False)
    op.create_index(op.f('ix_instances_reservation_id'), 'instances', ['reservation_id'], unique=False)
    op.create_table('resource_providers',
        sa.Column('uuid', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('generation', sa.Integer(), nullable=False),
        sa.Column('service_id', sa.Integer(), nullable=True),
        sa.Column('hypervisor_type', sa.String(length=255), nullable=True),
        sa.Column('hypervisor_version', sa.BigInteger(), nullable=True),
        sa.Column('cpu_info', sa.JSON(), nullable=False),
        sa.Column('supported_instances', sa.JSON(), nullable=False),
        sa.Column('availability_zone', sa.String(length=255), nullable=True),
        sa.Column('vcpus_used', sa.Integer(), nullable=False),
        sa.Column('free_ram_mb', sa.Integer(), nullable=False),
        sa.Column('free_disk_mb', sa.BigInteger(), nullable=False),
        sa.Column('num_instances', sa.Integer(), nullable=False),
        sa.Column('num_io_ops', sa.Integer(), nullable=False),
        sa.Column('failed_builds', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint('generation >= 0', name=op.f('ck_resource_providers_generation_not_negative')),
        sa.ForeignKeyConstraint(['service_id'], ['services.id'], name=op.f('fk_resource_providers_service_id_services'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('uuid', name=op.f('pk_resource_providers')),
        sa.UniqueConstraint('name', name=op.f('uq_resource_providers_name'))
    )
    op.create_index(op.f('ix_resource_providers_service_id'), 'resource_providers', ['service_id'], unique=False)
    op.create_table('allocations',
        sa.Column('consumer_uuid', sa.String(length=36), nullable=False),
        sa.Column('provider_uuid', sa.String(length=36), nullable=False),
        sa.Column('resource_class', sa.String(length=255), nullable=False),
        sa.Column('used', sa.BigInteger(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint('used > 0', name=op.f('ck_allocations_used_positive')),
        sa.ForeignKeyConstraint(['provider_uuid'], ['resource_providers.uuid'], name=op.f('fk_allocations_provider_uuid_resource_providers'), ondelete='RESTRICT'),
        sa.PrimaryKeyConstraint('consumer_uuid', 'provider_uuid', 'resource_class', name=op.f('pk_allocations'))
    )
    op.create_index(op.f('ix_allocations_provider_uuid_resource_class'), 'allocations', ['provider_uuid', 'resource_class'], unique=False)
    op.create_table('instance_actions',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('instance_id', sa.String(length=36), nullable=False),
        sa.Column('action', sa.String(length=64), nullable=False),
        sa.Column('request_id', sa.String(length=255), nullable=True),
        sa.Column('user_id', sa.String(length=255), nullable=True),
        sa.Column('project_id', sa.String(length=255), nullable=True),
        sa.Column('start_time', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finish_time', sa.DateTime(timezone=True), nullable=True),
        sa.Column('message', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['instance_id'], ['instances.id'], name=op.f('fk_instance_actions_instance_id_instances'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_instance_actions'))
    )
    op.create_index(op.f('ix_instance_actions_instance_id_request_id'), 'instance_actions', ['instance_id', 'request_id'], unique=False)
    op.create_table('instance_faults',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('instance_id', sa.String(length=36), nullable=False),
        sa.Column('code', sa.Integer(), nullable=False),
        sa.Column('message', sa.Text(), nullable=False),
        sa.Column('details', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['instance_id'], ['instances.id'], name=op.f('fk_instance_faults_instance_id_instances'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_instance_faults'))
    )
    op.create_index(op.f('ix_instance_faults_instance_id_created_at'), 'instance_faults', ['instance_id', 'created_at'], unique=False)
    op.create_table('inventories',
        sa.Column('provider_uuid', sa.String(length=36), nullable=False),
        sa.Column('resource_class', sa.String(length=255), nullable=False),
        sa.Column('total', sa.BigInteger(), nullable=False),
        sa.Column('reserved', sa.BigInteger(), nullable=False),
        sa.Column('min_unit', sa.BigInteger(), nullable=False),
        sa.Column('max_unit', sa.BigInteger(), nullable=False),
        sa.Column('step_size', sa.BigInteger(), nullable=False),
        sa.Column('allocation_ratio', sa.Float(), nullable=False),
        sa.CheckConstraint('allocation_ratio > 0', name=op.f('ck_inventories_allocation_ratio_positive')),
        sa.CheckConstraint('min_unit >= 1 AND max_unit >= min_unit', name=op.f('ck_inventories_units_valid')),
        sa.CheckConstraint('reserved >= 0 AND reserved <= total', name=op.f('ck_inventories_reserved_in_range')),
        sa.CheckConstraint('step_size >= 1', name=op.f('ck_inventories_step_size_positive')),
        sa.CheckConstraint('total >= 1', name=op.f('ck_inventories_total_positive')),
        sa.ForeignKeyConstraint(['provider_uuid'], ['resource_providers.uuid'], name=op.f('fk_inventories_provider_uuid_resource_providers'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('provider_uuid', 'resource_class', name=op.f('pk_inventories'))
    )
    op.create_table('provider_traits',
        sa.Column('provider_uuid', sa.String(length=36), nullable=False),
        sa.Column('trait_name', sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(['provider_uuid'], ['resource_providers.uuid'], name=op.f('fk_provider_traits_provider_uuid_resource_providers'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['trait_name'], ['traits.name'], name=op.f('fk_provider_traits_trait_name_traits'), ondelete='RESTRICT'),
        sa.PrimaryKeyConstraint('provider_uuid', 'trait_name', name=op.f('pk_provider_traits'))
    )
    op.create_index(op.f('ix_provider_traits_trait_name'), 'provider_traits', ['trait_name'], unique=False)
    op.create_table('instance_action_events',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('action_id', sa.Integer(), nullable=False),
        sa.Column('event', sa.String(length=255), nullable=False),
        sa.Column('start_time', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finish_time', sa.DateTime(timezone=True), nullable=True),
        sa.Column('result', sa.String(length=255), nullable=True),
        sa.Column('traceback', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['action_id'], ['instance_actions.id'], name=op.f('fk_instance_action_events_action_id_instance_actions'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_instance_action_events'))
    )
    op.create_index(op.f('ix_instance_action_events_action_id'), 'instance_action_events', ['action_id'], unique=False)


def downgrade() -> None:
    # Dropping a table drops its indexes; children before parents.
    op.drop_table('instance_action_events')
    op.drop_table('provider_traits')
    op.drop_table('inventories')
    op.drop_table('instance_faults')
    op.drop_table('instance_actions')
    op.drop_table('allocations')
    op.drop_table('resource_providers')
    op.drop_table('instances')
    op.drop_table('aggregate_metadata')
    op.drop_table('aggregate_hosts')
    op.drop_table('traits')
    op.drop_table('services')
    op.drop_table('server_groups')
    op.drop_table('quotas')
    op.drop_table('quota_usages')
    op.drop_table('images')
    op.drop_table('flavors')
    op.drop_table('aggregates')
